"""The discrete view of the continuous environments, and the action-space migrator.

The original fleet used seven discrete actions; ``HybridActionEnv`` lets such a
policy run on the continuous environments so the two can be compared under
the same rules. Each discrete action stands for one raw continuous action
(smoothing still applies):

| discrete | raw action |
|---|---|
| HOLD | 0.0 |
| BUY_SMALL | 0.25 |
| BUY_MEDIUM | 0.5 |
| BUY_LARGE | 1.0 |
| SELL_PARTIAL | -0.25 |
| SELL_HALF | -0.5 |
| SELL_ALL | -1.0 |
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces


class DiscreteAction(IntEnum):
    """The seven actions of the original discrete agents."""

    HOLD = 0
    BUY_SMALL = 1
    BUY_MEDIUM = 2
    BUY_LARGE = 3
    SELL_PARTIAL = 4
    SELL_HALF = 5
    SELL_ALL = 6


CONTINUOUS_VALUE = np.array([0.0, 0.25, 0.5, 1.0, -0.25, -0.5, -1.0])
"""Raw continuous action of each discrete action, indexed by ``DiscreteAction``."""


class ActionSpaceMigrator:
    """Converts actions between the discrete and the continuous action spaces."""

    def __init__(self, hold_threshold: float = 0.1) -> None:
        self.hold_threshold = hold_threshold

    def to_continuous(self, discrete: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Raw continuous actions for discrete ones (any shape)."""
        values = np.asarray(discrete)
        index = values.astype(np.int64)
        if np.any(index != values) or np.any((index < 0) | (index >= len(CONTINUOUS_VALUE))):
            raise ValueError(f"discrete actions must be integers in 0..6, got {np.unique(values)}")
        return CONTINUOUS_VALUE[index]

    def to_discrete(self, continuous: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The hold zone maps to HOLD; any other action to the nearest buy or sell."""
        a = np.asarray(continuous, dtype=np.float64)
        distance = np.abs(a[..., None] - CONTINUOUS_VALUE)
        distance[..., DiscreteAction.HOLD] = np.inf  # outside the hold zone, never HOLD
        nearest = distance.argmin(axis=-1)
        return np.where(np.abs(a) < self.hold_threshold, DiscreteAction.HOLD, nearest)


class HybridActionEnv(gym.ActionWrapper[Any, Any, Any]):
    """A ``Discrete(7)`` view (``MultiDiscrete`` for a portfolio) of a continuous env."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        box = env.action_space
        if not isinstance(box, spaces.Box):
            raise TypeError(f"HybridActionEnv wraps a Box action space, got {box}")
        self._shape = box.shape
        self.migrator = ActionSpaceMigrator()
        size = int(np.prod(box.shape))
        self.action_space: spaces.Space[Any] = (
            spaces.Discrete(len(DiscreteAction))
            if size == 1
            else spaces.MultiDiscrete(np.full(box.shape, len(DiscreteAction)))
        )

    def action(self, action: Any) -> npt.NDArray[np.float32]:
        """The continuous action a discrete one stands for."""
        return self.migrator.to_continuous(action).reshape(self._shape).astype(np.float32)
