"""Settings of hindsight experience replay for return goals (YAML section ``her``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

GOAL_LIMIT = 5.0
"""Goals and achieved returns are observed clipped to +-GOAL_LIMIT (the features' clip)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HERConfig:
    """Goal-conditioned replay: transitions relabelled with returns achieved later; off by
    default (docs/her.md)."""

    enabled: bool = False
    """Condition the policy on a return goal and relabel replayed transitions."""
    k: int = 4
    """Future goals sampled per stored transition (the plan's k = 4; 0: goals without
    relabelling, the baseline HER is measured against)."""
    goal: float = 0.02
    """Return goal of a goal episode (the plan's +2%), in the units of the env's reward summed
    over the episode: the log change of equity of a single-symbol env, each symbol's share of
    the return in the portfolio env. The goal the symbol agents serve."""
    goal_spread: float = 0.0
    """Training goals are drawn uniformly from goal +- goal_spread at each reset, one per
    symbol (0: always goal)."""
    horizon: int = 20
    """Steps of a goal episode: the goal is to be reached within them. Training episodes end
    (terminate) after horizon steps from a random start; serving starts a new goal every
    horizon bars."""
    miss_penalty: float = 0.001
    """Subtracted from the reward of every step that ends below the goal, in the reward's
    units before training.reward_scale (0.001: a tenth of a percent of return per step)."""

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError(f"her.k must be >= 0 (future goals per transition), got {self.k}")
        if self.horizon < 1:
            raise ValueError(f"her.horizon must be >= 1 step, got {self.horizon}")
        if not (math.isfinite(self.goal_spread) and self.goal_spread >= 0.0):
            raise ValueError(f"her.goal_spread must be >= 0, got {self.goal_spread}")
        low, high = self.goal - self.goal_spread, self.goal + self.goal_spread
        if not (math.isfinite(self.goal) and -GOAL_LIMIT < low and high < GOAL_LIMIT):
            raise ValueError(
                f"her.goal +- her.goal_spread must lie inside (-{GOAL_LIMIT}, {GOAL_LIMIT}), "
                f"got [{low}, {high}]: goals are returns, 0.02 is +2%"
            )
        if not (math.isfinite(self.miss_penalty) and self.miss_penalty >= 0.0):
            raise ValueError(f"her.miss_penalty must be >= 0, got {self.miss_penalty}")
