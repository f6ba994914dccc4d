"""Rollouts: k samples per prompt, partial rollouts with a replay buffer, repeat early-stop."""

from vlrl.rollout.buffer import ReplayBuffer, Segment, Trajectory
from vlrl.rollout.engine import RolloutConfig, rollout

__all__ = ["ReplayBuffer", "RolloutConfig", "Segment", "Trajectory", "rollout"]
