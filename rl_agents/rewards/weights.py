"""The objectives' weights: the regime's weights, smoothed, and how much they moved."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rl_agents.rewards.config import OBJECTIVES

FloatArray = npt.NDArray[np.float64]

PROFIT, RISK = OBJECTIVES.index("profit"), OBJECTIVES.index("risk")


def regime_weights(
    base: FloatArray, high_volatility: bool, risk_boost: float, profit_damp: float
) -> FloatArray:
    """``base`` (in ``OBJECTIVES`` order), in a high-volatility regime with risk times
    ``risk_boost`` and profit times ``profit_damp``; always renormalised to sum to 1."""
    weights = np.array(base, dtype=np.float64)
    if high_volatility:
        weights[RISK] *= risk_boost
        weights[PROFIT] *= profit_damp
    return weights / weights.sum()


class WeightTracker:
    """Weights that move ``rate`` of the way to their target each step, and their spread
    over an episode: the standard deviation of each weight over its mean.

    ``spread`` is the current episode's; ``worst_spread`` is, per weight, the
    largest over every episode since the tracker was made (the current one
    included), so that a report read just after a reset still says how much the
    weights moved in the episodes that were trained on.
    """

    def __init__(self, rate: float, size: int = len(OBJECTIVES)) -> None:
        self.rate = rate
        self.weights = np.zeros(size)
        self._count = 0
        self._mean = np.zeros(size)
        self._m2 = np.zeros(size)
        self._worst = np.zeros(size)
        self.episodes = 0
        """Episodes begun (``reset`` calls)."""

    def reset(self, target: FloatArray) -> FloatArray:
        """End the episode (keeping its spread in ``worst_spread``) and start one at
        ``target``; return the weights."""
        self._worst = self.worst_spread()
        self.episodes += 1
        self.weights[:] = target
        self._count = 0
        self._mean[:] = 0.0
        self._m2[:] = 0.0
        return self._observe()

    def step(self, target: FloatArray) -> FloatArray:
        """Move towards ``target``; return the weights (they sum to 1 when the targets do)."""
        self.weights += self.rate * (target - self.weights)
        return self._observe()

    def spread(self) -> FloatArray:
        """Each weight's relative spread over the episode so far: std / mean (0 when the
        mean is 0)."""
        if self._count == 0:
            return np.zeros_like(self._mean)
        std = np.sqrt(self._m2 / self._count)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._mean > 0.0, std / self._mean, 0.0)

    def worst_spread(self) -> FloatArray:
        """Each weight's largest ``spread`` over the episodes so far, this one included."""
        return np.maximum(self._worst, self.spread())

    def _observe(self) -> FloatArray:
        # Welford's update of the mean and the sum of squared deviations.
        self._count += 1
        delta = self.weights - self._mean
        self._mean += delta / self._count
        self._m2 += delta * (self.weights - self._mean)
        return self.weights.copy()
