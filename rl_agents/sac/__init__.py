"""Soft actor-critic for the trading environments (and any gymnasium Box env)."""

from rl_agents.sac.agent import (
    SAC,
    Progress,
    TrainingDiverged,
    TrainResult,
    evaluate,
    train,
)
from rl_agents.sac.buffer import Batch, ReplayBuffer
from rl_agents.sac.config import ActionSpaceConfig, ConfigError, SACConfig
from rl_agents.sac.networks import FleetActor, SquashedGaussianActor, TwinCritic

__all__ = [
    "SAC",
    "ActionSpaceConfig",
    "Batch",
    "ConfigError",
    "FleetActor",
    "Progress",
    "ReplayBuffer",
    "SACConfig",
    "SquashedGaussianActor",
    "TrainResult",
    "TrainingDiverged",
    "TwinCritic",
    "evaluate",
    "train",
]
