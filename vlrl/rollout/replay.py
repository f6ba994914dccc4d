"""Replay of earlier iterations' rewarded groups in the current update (off by default; not in k1.5).

An RL iteration takes its optimizer steps on one rollout batch, so they follow that batch's prompts; a
rejection-sampling fine-tune (ReST) steps on correct answers shuffled across every prompt it sampled.
``GroupReplay`` keeps the groups (one prompt's responses of one iteration, with their rewards) that held
a correct response for ``max_age`` iterations and draws ``groups`` of them into each later update,
shuffled among the iteration's own groups. A replayed group keeps its rewards, so its advantages under a
group baseline are those of the iteration that sampled it; its log-ratio term is taken to the current
iteration's pi_theta_i (its responses are rescored, as partial rollouts' older segments are). The
responses are off-policy by up to ``max_age`` iterations and no importance weight corrects for that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from vlrl.algos.group import group_rows
from vlrl.rewards.combine import ScoredBatch
from vlrl.rollout.buffer import Trajectory, trajectory_from_state, trajectory_state
from vlrl.types import Sample


@dataclass
class ReplayConfig:
    """``groups``: earlier groups drawn into each update (0 = off); ``max_age``: iterations a group stays
    drawable (1 = only the previous iteration's)."""

    groups: int = 0
    max_age: int = 4


@dataclass
class StoredGroup:
    iteration: int
    trajs: list[Trajectory]
    rewards: list[float]
    correct: list[bool]


class GroupReplay:
    """This process's drawable groups (each process keeps those it trained on)."""

    def __init__(self, max_age: int = 4) -> None:
        self.max_age = max_age
        self.items: list[StoredGroup] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, iteration: int, trajs: list[Trajectory], scored: ScoredBatch) -> None:
        """Store the groups of ``trajs`` (rows of ``scored``) that hold a correct response, and forget the
        groups older than ``max_age`` iterations counted from ``iteration + 1`` (the next draw's)."""
        for rows in group_rows(scored.group):
            if bool(scored.correct[rows].any()):
                self.items.append(StoredGroup(iteration, [trajs[i] for i in rows],
                                              [float(scored.rewards[i]) for i in rows],
                                              [bool(scored.correct[i]) for i in rows]))
        self.items = [x for x in self.items if iteration + 1 - x.iteration <= self.max_age]

    def draw(self, n: int, generator: torch.Generator) -> list[StoredGroup]:
        """Up to ``n`` distinct stored groups, uniformly."""
        picks = torch.randperm(len(self.items), generator=generator)[:n].tolist()
        return [self.items[i] for i in picks]

    def state_dict(self) -> dict:
        return {"max_age": self.max_age,
                "items": [{"iteration": x.iteration, "rewards": x.rewards, "correct": x.correct,
                           "trajs": [trajectory_state(t) for t in x.trajs]} for x in self.items]}

    def load_state_dict(self, state: dict, samples_by_id: dict[str, Sample]) -> None:
        self.max_age = state["max_age"]
        self.items = [StoredGroup(d["iteration"], [trajectory_from_state(t, samples_by_id) for t in d["trajs"]],
                                  list(d["rewards"]), list(d["correct"])) for d in state["items"]]


def with_replayed(trajs: list[Trajectory], scored: ScoredBatch, drawn: list[StoredGroup],
                  generator: torch.Generator) -> tuple[list[Trajectory], ScoredBatch]:
    """The iteration's trajectories (rows of ``scored``, B of them) and the ``drawn`` groups (R rows) as one
    update batch of B + R rows: every group keeps its rows together, groups in a random order (so that
    each minibatch mixes replayed and fresh groups), the replayed ones with group ids of their own."""
    own = group_rows(scored.group)
    groups = [[trajs[i] for i in rows] for rows in own]
    fields = [(scored.rewards[rows], scored.correct[rows]) for rows in own]
    for x in drawn:
        groups.append(x.trajs)
        fields.append((torch.tensor(x.rewards, dtype=scored.rewards.dtype), torch.tensor(x.correct)))
    order = torch.randperm(len(groups), generator=generator).tolist()
    out = [t for g in order for t in groups[g]]
    group = torch.tensor([n for n, g in enumerate(order) for _ in groups[g]], dtype=torch.long)
    rewards = torch.cat([fields[g][0] for g in order]) if order else scored.rewards
    correct = torch.cat([fields[g][1] for g in order]) if order else scored.correct
    lengths = torch.tensor([float(len(t.tokens)) for t in out], dtype=torch.float32)
    return out, replace(scored, rewards=rewards, correct=correct, lengths=lengths, group=group)

