"""The multi-objective shaper: one step of a ``MarketEngine`` in, the shaped rewards out.

After each step of the engine, ``RewardShaper.step`` reads what the step
did (the book's value and cost, the fills, equity and its peak), keeps the
last ``window`` actions and fills of each symbol, and returns every
objective per symbol, their weights and the potential-based shaping
(docs/rewards.md). It knows nothing of gymnasium; the wrapper feeds it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from core.collapse import BINS
from rl_agents.envs.engine import MarketEngine
from rl_agents.rewards import objectives as obj
from rl_agents.rewards.config import OBJECTIVES, RewardConfig
from rl_agents.rewards.market import market_stats
from rl_agents.rewards.shaping import potential_shaping, trading_potential
from rl_agents.rewards.weights import WeightTracker, regime_weights

FloatArray = npt.NDArray[np.float64]

COMPONENTS = (*OBJECTIVES, "shaping")
"""The parts of the shaped reward: the five weighted objectives and the shaping term."""


class ShapedStep(NamedTuple):
    """The shaped rewards of one step and what they are made of."""

    rewards: FloatArray
    """``[n]``: each symbol's shaped reward, the sum of its column of ``contributions``."""
    contributions: FloatArray
    """``[len(COMPONENTS), n]``: the weighted objectives and the weighted shaping term."""
    objectives: FloatArray
    """``[len(OBJECTIVES), n]``: the objectives before weighting."""
    weights: FloatArray
    """``[len(OBJECTIVES)]``: this step's weights (they sum to 1)."""
    fill_quality: FloatArray
    """``[n]``: each fill's quality against the recent range (NaN where none)."""
    high_volatility: bool
    """Whether the step was decided in a high-volatility regime."""


class RewardShaper:
    """The shaped rewards of one engine's steps, under ``config``."""

    def __init__(self, engine: MarketEngine, config: RewardConfig) -> None:
        self.engine = engine
        self.config = config
        self.stats = market_stats(
            engine.close, engine.present, config.window, config.high_volatility
        )
        base = np.array(config.weights())
        self.base = base / base.sum()
        self.tracker = WeightTracker(config.weight_rate)
        n, w = engine.n, config.window
        self._share = min(engine.config.rules.max_position_pct, 1.0 / n)
        self._bins = np.zeros((w, n), dtype=np.int64)
        self._fills = np.zeros((w, n), dtype=bool)
        self._bin_counts = np.zeros((n, BINS), dtype=np.int64)
        self._steps = 0
        self._rows = np.arange(n)
        self.peak = engine.equity
        self._excess = 0.0
        self.potential = np.zeros(n)
        """Each symbol's potential at the current state."""

    def target_weights(self, t: int) -> FloatArray:
        """The weights the regime of step ``t`` asks for (the base ones when not adaptive)."""
        high = self.config.adaptive and bool(self.stats.high_volatility[t])
        return regime_weights(self.base, high, self.config.risk_boost, self.config.profit_damp)

    def reset(self) -> None:
        """Start an episode at the engine's freshly reset state."""
        engine = self.engine
        self.tracker.reset(self.target_weights(engine.t))
        self._bins[:] = 0
        self._fills[:] = False
        self._bin_counts[:] = 0
        self._steps = 0
        self.peak = engine.equity
        self._excess = 0.0
        self.potential = self._potential()

    def step(self, actions: FloatArray, returns: FloatArray, terminated: bool) -> ShapedStep:
        """The shaped rewards of the step the engine just took on raw ``actions`` ``[n]``;
        ``returns`` ``[n]`` is each symbol's share of the step's return (the profit)."""
        engine, cfg = self.engine, self.config
        decided, now = engine.t - 1, engine.t
        stats = self.stats
        scale = obj.unit(stats.volatility[decided], engine.n, self._share)

        # The last `window` actions and fills of each symbol.
        row = self._steps % cfg.window
        if self._steps >= cfg.window:
            np.subtract.at(self._bin_counts, (self._rows, self._bins[row]), 1)
        self._bins[row] = obj.action_bins(actions)
        self._fills[row] = engine.quantity != 0.0
        np.add.at(self._bin_counts, (self._rows, self._bins[row]), 1)
        self._steps += 1
        fill_rate = self._fills[: min(self._steps, cfg.window)].mean(axis=0)

        # Drawdown past its limit, deepened by this step.
        equity = engine.equity
        self.peak = max(self.peak, equity)
        excess = obj.drawdown_excess(equity, self.peak, cfg.max_drawdown)
        deepening, self._excess = excess - self._excess, excess

        exposure = engine.value / equity
        recent = stats.returns[max(1, now - cfg.window + 1) : now + 1]
        _, var_parts = obj.book_var(exposure, recent)
        quality = obj.fill_quality(
            engine.quantity, engine.price, stats.low[decided], stats.high[decided]
        )
        values = np.stack([
            returns,
            obj.risk(returns, var_parts, deepening, cfg.var_limit),
            obj.activity(fill_rate, scale, cfg.target_trade_frequency),
            obj.timing(quality, scale),
            obj.exploration(obj.diversity(self._bin_counts), scale, cfg.target_diversity),
        ])  # fmt: skip
        high = cfg.adaptive and bool(stats.high_volatility[decided])
        weights = self.tracker.step(self.target_weights(decided))

        potential = self._potential()
        shaping = potential_shaping(self.potential, potential, cfg.potential_gamma, terminated)
        self.potential = potential
        weighted = weights[:, None] * values
        contributions = np.concatenate([weighted, cfg.potential_weight * shaping[None]])
        return ShapedStep(
            rewards=contributions.sum(axis=0),
            contributions=contributions,
            objectives=values,
            weights=weights,
            fill_quality=quality,
            high_volatility=high,
        )

    def _potential(self) -> FloatArray:
        engine = self.engine
        equity = engine.equity
        held = engine.value > 0.0
        unrealised = np.where(held, (engine.value - engine.cost) / equity, 0.0)
        exposure = engine.value / equity
        trend = self.stats.trend[engine.t]
        return trading_potential(unrealised, exposure, trend, self.config.potential_trend)
