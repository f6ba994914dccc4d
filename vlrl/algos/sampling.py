"""Which prompts an RL iteration trains on: uniform, curriculum, prioritized, or curriculum x prioritized.

- **Curriculum** (k1.5 §2.3.4, Fig. 9): stages of allowed difficulty levels, switched at given iterations
  (e.g. all levels first, then only the hard ones).
- **Prioritized**: prompt i is drawn with probability proportional to max(1 - s_i, floor), where s_i is
  its tracked success rate (initialised from the curation pass rate when known, else ``init``), so
  solved prompts keep a small chance and unseen ones are not starved.
Both combine: the curriculum restricts the pool, the priorities weight the draw within it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class CurriculumStage:
    start_iteration: int = 0
    levels: list[int] = field(default_factory=list)  # allowed difficulty levels; empty = all


def prioritized_weights(success: torch.Tensor, floor: float = 0.05) -> torch.Tensor:
    """(N,) success rates in [0, 1] -> (N,) sampling probabilities proportional to max(1 - s, floor)."""
    w = (1.0 - success).clamp(min=floor)
    return w / w.sum()


class SuccessTracker:
    """Per-prompt state: success rates (exponential moving average of each iteration's group accuracy)
    and whether a prompt has been drawn before (``drawn``: for ``no_repeat`` sampling and the accuracy on
    prompts the policy has never trained on)."""

    def __init__(self, ids: Sequence[str], init: dict[str, float] | None = None, default: float = 0.5,
                 momentum: float = 0.5) -> None:
        init = init or {}
        self.ids = list(ids)
        self.index = {i: n for n, i in enumerate(self.ids)}
        self.rates = torch.tensor([float(init.get(i, default)) for i in self.ids])
        self.drawn = torch.zeros(len(self.ids), dtype=torch.bool)
        self.momentum = momentum

    def mark_drawn(self, indices: Sequence[int]) -> list[int]:
        """Mark prompts as drawn; return those drawn for the first time."""
        first = [i for i in indices if not bool(self.drawn[i])]
        self.drawn[list(indices)] = True
        return first

    def update(self, sample_id: str, accuracy: float) -> None:
        j = self.index[sample_id]
        self.rates[j] = self.momentum * self.rates[j] + (1 - self.momentum) * accuracy

    def state_dict(self) -> dict:
        return {"rates": self.rates.clone(), "drawn": self.drawn.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.rates = state["rates"].clone()
        if "drawn" in state:  # checkpoints written before the mask existed resume with none drawn
            self.drawn = state["drawn"].clone()


def allowed_levels(iteration: int, stages: Sequence[CurriculumStage]) -> list[int]:
    """The levels of the last stage that has started by ``iteration`` (empty = all)."""
    current: list[int] = []
    for st in sorted(stages, key=lambda s: s.start_iteration):
        if iteration >= st.start_iteration:
            current = list(st.levels)
    return current


def sample_prompts(n: int, difficulties: Sequence[int | None], success: torch.Tensor, iteration: int,
                   strategy: str, stages: Sequence[CurriculumStage] = (), floor: float = 0.05,
                   generator: torch.Generator | None = None, drawn: torch.Tensor | None = None) -> list[int]:
    """Indices of ``n`` distinct prompts for this iteration.

    Args:
        strategy: "uniform", "curriculum", "prioritized" or "curriculum+prioritized".
        difficulties: (N,) level of each prompt (None = unknown, always allowed).
        success: (N,) tracked success rates (used by the prioritized strategies).
        drawn: (N,) bool, prompts drawn in earlier iterations; when given, only the others are drawn
            while at least ``n`` of them remain in the pool (``no_repeat``), then the whole pool again.
    """
    if strategy not in ("uniform", "curriculum", "prioritized", "curriculum+prioritized"):
        raise ValueError(f"sampling strategy '{strategy}' is not uniform, curriculum, prioritized or "
                         f"curriculum+prioritized")
    pool = list(range(len(difficulties)))
    if "curriculum" in strategy:
        levels = allowed_levels(iteration, stages)
        allowed = [i for i in pool if difficulties[i] is None or difficulties[i] in levels] if levels else pool
        if not allowed:  # e.g. a curated set whose pass-rate levels the curriculum does not name
            warnings.warn(f"curriculum at iteration {iteration} allows levels {levels} but no prompt has them "
                          f"(levels present: {sorted({d for d in difficulties if d is not None})}); drawing "
                          f"from every level", stacklevel=2)
        pool = allowed or pool
    if drawn is not None:
        fresh = [i for i in pool if not bool(drawn[i])]
        pool = fresh if len(fresh) >= n else pool
    weights = torch.ones(len(pool))
    if "prioritized" in strategy:
        weights = prioritized_weights(success[pool], floor)
    picks = torch.multinomial(weights, min(n, len(pool)), replacement=False, generator=generator)
    return [pool[i] for i in picks.tolist()]
