"""Trajectories and the partial-rollout replay buffer (k1.5 §2.6.2).

A trajectory's response may be written over several iterations: each iteration it gets at most
``budget`` new tokens; if it has not finished, it waits in the replay buffer and is continued, under the
then-current policy, in the next iteration. ``segments`` records which iteration wrote which tokens so
the loss can exclude segments written by older policies while keeping them as context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlrl.types import Sample


@dataclass
class Segment:
    start: int  # token offset in the response
    end: int
    iteration: int  # the iteration (policy) that generated these tokens
    # the sampler's log-prob of each token (at the rollout temperature); not checkpointed, only compared
    # with the loss's log-probs in the iteration that wrote them
    logprobs: list[float] | None = field(default=None, repr=False, compare=False)


@dataclass
class Trajectory:
    """One response to one prompt, possibly written in several segments.

    Attributes:
        finish: None while unfinished; then "stop" (EOS), "repeat" (loop cut), "max_length" (the total
            response cap), or "expired" (waited in the buffer longer than the maximum age).
        started: the iteration it was started in.
        key: its 32-bit sampling key (``vlrl.models.keyed_random``): what it draws depends on the key and
            the iteration only, not on the process or batch that generates it.
    """

    sample: Sample
    tokens: list[int] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    finish: str | None = None
    started: int = 0
    key: int = 0

    def add_segment(self, tokens: list[int], iteration: int, logprobs: list[float] | None = None) -> None:
        if tokens:
            self.segments.append(Segment(len(self.tokens), len(self.tokens) + len(tokens), iteration, logprobs))
            self.tokens = self.tokens + list(tokens)

    def loss_mask(self, iteration: int, mask_old_segments: bool) -> list[bool]:
        """Per response token: does it count in the loss? Older segments are context only when masked."""
        mask = [True] * len(self.tokens)
        if mask_old_segments:
            for seg in self.segments:
                if seg.iteration != iteration:
                    mask[seg.start : seg.end] = [False] * (seg.end - seg.start)
        return mask


def trajectory_state(t: Trajectory) -> dict:
    """A trajectory as checkpoint data (the sampler's log-probs are not kept)."""
    return {"sample_id": t.sample.id, "tokens": t.tokens, "started": t.started, "key": t.key, "finish": t.finish,
            "segments": [[s.start, s.end, s.iteration] for s in t.segments]}


def trajectory_from_state(d: dict, samples_by_id: dict[str, Sample]) -> Trajectory:
    """The inverse of :func:`trajectory_state` (checkpoints written before ``finish`` or ``key`` were kept
    load them as None and 0)."""
    return Trajectory(samples_by_id[d["sample_id"]], list(d["tokens"]), [Segment(*s) for s in d["segments"]],
                      d.get("finish"), d["started"], d.get("key", 0))


class ReplayBuffer:
    """Unfinished trajectories waiting to be continued; each keeps at most ``max_age`` iterations."""

    def __init__(self, max_age: int = 2) -> None:
        self.max_age = max_age
        self.items: list[Trajectory] = []
        self.expired = 0

    def __len__(self) -> int:
        return len(self.items)

    def put(self, traj: Trajectory, iteration: int) -> None:
        if iteration - traj.started + 1 > self.max_age:
            traj.finish = "expired"
            self.expired += 1
            return
        self.items.append(traj)

    def take_all(self) -> list[Trajectory]:
        items, self.items = self.items, []
        return items

    def state_dict(self) -> dict:
        return {"max_age": self.max_age, "expired": self.expired, "items": [trajectory_state(t) for t in self.items]}

    def load_state_dict(self, state: dict, samples_by_id: dict[str, Sample]) -> None:
        self.max_age, self.expired = state["max_age"], state["expired"]
        self.items = [trajectory_from_state(d, samples_by_id) for d in state["items"]]
