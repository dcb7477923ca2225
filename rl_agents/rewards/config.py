"""Settings of the reward engineering of phase C (YAML section ``rewards``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

OBJECTIVES = ("profit", "risk", "activity", "timing", "exploration")
"""The five objectives of the plan's C.1, in the order of every array of them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RewardConfig:
    """The multi-objective shaper and the potential-based shaping; off by default
    (docs/rewards.md)."""

    enabled: bool = False
    """Replace the env's reward (the log change of equity) by the shaped reward."""
    profit_weight: float = 0.40
    """Weight of profit: the symbol's share of the step's return."""
    risk_weight: float = 0.25
    """Weight of risk: losses that deepen a drawdown past max_drawdown, and value at risk
    beyond var_limit, charged again."""
    activity_weight: float = 0.15
    """Weight of activity: how close the recent trade frequency is to
    target_trade_frequency."""
    timing_weight: float = 0.10
    """Weight of timing: buys near the low and sells near the high of the recent range."""
    exploration_weight: float = 0.10
    """Weight of exploration: the normalised entropy of the recent actions against
    target_diversity. The five weights are normalised to sum to 1."""
    adaptive: bool = True
    """Regime-adaptive weights: in a high-volatility regime risk gets risk_boost times its
    weight and profit profit_damp times, renormalised to sum to 1."""
    high_volatility: float = 1.5
    """The regime is high-volatility when the market's recent volatility exceeds this
    multiple of its average so far."""
    risk_boost: float = 1.5
    """Factor on the risk weight in a high-volatility regime."""
    profit_damp: float = 0.8
    """Factor on the profit weight in a high-volatility regime."""
    weight_rate: float = 0.05
    """Share of the way the weights move towards their regime's weights each step (1: at
    once); smooths a regime change over about 1 / weight_rate steps."""
    window: int = 20
    """Bars of history behind the rolling statistics: volatility, trend, price range, trade
    frequency and action entropy."""
    max_drawdown: float = 0.05
    """Drawdown from the episode's peak equity up to which losses are charged only once."""
    var_limit: float = 0.02
    """One-step 95% value at risk of the book, as a share of equity, charged beyond this."""
    target_trade_frequency: float = 0.2
    """Share of steps with a fill that the activity objective rewards most."""
    target_diversity: float = 0.5
    """Normalised action entropy from which the exploration objective pays in full."""
    potential_weight: float = 0.4
    """Weight of the potential-based shaping F = gamma * phi(s') - phi(s) (0: none); the
    profit weight by default, so the shaping is no louder than the profit it anticipates."""
    potential_gamma: float = 0.99
    """Discount of the potential-based shaping; keep it equal to training.gamma, the one the
    policy-invariance proof needs."""
    potential_trend: float = 1.0
    """Weight of trend alignment (exposure times the window's log return) in the potential,
    beside the unrealised P&L."""
    hacking_window: int = 500
    """Steps over which the reward-hacking check compares each objective with the return."""
    hacking_z: float = 2.0
    """An objective is flagged when over hacking_window its contribution rose and the
    unshaped return fell, each by more than this many standard errors."""

    def __post_init__(self) -> None:
        weights = self.weights()
        if not all(math.isfinite(w) and w >= 0.0 for w in weights):
            raise ValueError(f"rewards: the objective weights must be >= 0, got {weights}")
        if not sum(weights) > 0.0:
            raise ValueError("rewards: at least one objective weight must be > 0")
        positive = {
            "high_volatility": self.high_volatility,
            "risk_boost": self.risk_boost,
            "profit_damp": self.profit_damp,
            "hacking_z": self.hacking_z,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"rewards.{name} must be > 0, got {value}")
        shares = {
            "max_drawdown": self.max_drawdown,
            "var_limit": self.var_limit,
            "target_trade_frequency": self.target_trade_frequency,
            "target_diversity": self.target_diversity,
        }
        for name, value in shares.items():
            if not 0.0 < value < 1.0:
                raise ValueError(f"rewards.{name} must be in (0, 1), got {value}")
        if not 0.0 < self.weight_rate <= 1.0:
            raise ValueError(f"rewards.weight_rate must be in (0, 1], got {self.weight_rate}")
        if self.window < 2:
            raise ValueError(f"rewards.window must be >= 2 bars, got {self.window}")
        if self.hacking_window < 2:
            raise ValueError(f"rewards.hacking_window must be >= 2, got {self.hacking_window}")
        if not (math.isfinite(self.potential_weight) and self.potential_weight >= 0.0):
            raise ValueError(f"rewards.potential_weight must be >= 0, got {self.potential_weight}")
        if not 0.0 <= self.potential_gamma <= 1.0:
            raise ValueError(
                f"rewards.potential_gamma must be in [0, 1], got {self.potential_gamma}"
            )
        if not math.isfinite(self.potential_trend):
            raise ValueError(f"rewards.potential_trend must be finite, got {self.potential_trend}")

    def weights(self) -> tuple[float, float, float, float, float]:
        """The five objective weights as given, in ``OBJECTIVES`` order."""
        return (
            self.profit_weight,
            self.risk_weight,
            self.activity_weight,
            self.timing_weight,
            self.exploration_weight,
        )
