"""Environment configuration: one frozen value with the plan's defaults."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from core.rules import TradingRules
from rl_agents.data import BYTETHEORY, DEFAULT_UNIVERSE

RewardFn = Callable[[float, float], float]
"""``reward(previous_equity, equity) -> float``, called once per step."""


def log_equity_change(previous_equity: float, equity: float) -> float:
    """The default reward: ``log(equity / previous_equity)``, scale-free and additive."""
    return math.log(equity / previous_equity)


def equity_change(previous_equity: float, equity: float) -> float:
    """Alternative reward: the simple return of the step."""
    return equity / previous_equity - 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvConfig:
    """Settings of the trading environments (docs/environments.md)."""

    rules: TradingRules = field(default_factory=TradingRules)
    """The trading rules shared with the portfolio manager."""
    window: int = 10
    """Bars of features in an observation (the symbol agent's default too)."""
    dataset: str = BYTETHEORY
    """``bytetheory`` or a bar CSV(.gz); used when no frame is given."""
    n_symbols: int = DEFAULT_UNIVERSE
    """Universe size: the first N symbols with enough bars (portfolio env)."""
    start: int = 0
    """First timestamp of the data span."""
    steps: int | None = None
    """Timestamps in the span (all when None)."""
    min_coverage: float = 1.0
    """Share of the span's timestamps a symbol needs a bar at."""
    episode_length: int | None = None
    """Steps per episode; None runs from the first to the last bar. Shorter episodes
    start at a random step drawn from the reset seed."""
    reward: RewardFn = log_equity_change
    """The reward function; replace it to shape rewards."""
    ruin_fraction: float = 0.01
    """The episode terminates when equity falls below this share of the initial cash."""

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.episode_length is not None and self.episode_length < 1:
            raise ValueError("episode_length must be >= 1 (or None)")
        if not 0.0 <= self.ruin_fraction < 1.0:
            raise ValueError("ruin_fraction must be in [0, 1)")
