"""Losses and pure math. LOSSES maps a name to a pure tensor function returning (loss, metrics)."""

from vlrl.algos.base import LOSSES, LossFn, LossOutput, sequence_logp
from vlrl.algos import dpo as _dpo  # noqa: F401  (registers "dpo")
from vlrl.algos import grpo as _grpo  # noqa: F401  (registers "grpo", "rloo")
from vlrl.algos import kimi as _kimi  # noqa: F401  (registers "kimi")

__all__ = ["LOSSES", "LossFn", "LossOutput", "sequence_logp"]
