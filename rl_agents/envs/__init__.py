"""Gymnasium trading environments that run the services' rules from ``core``."""

from rl_agents.envs.config import EnvConfig, equity_change, log_equity_change
from rl_agents.envs.continuous import ContinuousTradingEnv
from rl_agents.envs.engine import EnvDataError, MarketEngine
from rl_agents.envs.hybrid import (
    ActionSpaceMigrator,
    DiscreteAction,
    HybridActionEnv,
)
from rl_agents.envs.portfolio import PortfolioTradingEnv


def make_hybrid(**kwargs: object) -> HybridActionEnv:
    """The ``Discrete(7)`` view of ``ContinuousTradingEnv`` (registered entry point)."""
    return HybridActionEnv(ContinuousTradingEnv(**kwargs))  # type: ignore[arg-type]


__all__ = [
    "ActionSpaceMigrator",
    "ContinuousTradingEnv",
    "DiscreteAction",
    "EnvConfig",
    "EnvDataError",
    "HybridActionEnv",
    "MarketEngine",
    "PortfolioTradingEnv",
    "equity_change",
    "log_equity_change",
    "make_hybrid",
]
