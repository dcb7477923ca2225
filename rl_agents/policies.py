"""Policies behind one interface: a batch of observations in, one action per row out.

Trained SAC checkpoints will stand behind the same ``Policy`` protocol; until
then the symbol agents serve the ``MomentumPolicy`` baseline.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from core.features import FEATURE_NAMES, N_BAR_FEATURES

Observations = npt.NDArray[np.float32]
Actions = npt.NDArray[np.float64]


class Policy(Protocol):
    """Maps observations ``[n, obs_dim]`` to raw actions ``[n]`` in [-1, 1]."""

    name: str
    version: str

    def act(self, observations: Observations) -> Actions:
        """One action per observation row."""
        ...


class MomentumPolicy:
    """Baseline: buy after recent gains, sell after recent losses, hold when flat.

    ``a = tanh(gain * sum of the last `lookback` log returns)``.
    """

    name = "momentum"
    version = "1"

    def __init__(self, *, window: int, lookback: int = 5, gain: float = 25.0) -> None:
        if not 1 <= lookback <= window:
            raise ValueError(f"lookback must be in [1, window={window}], got {lookback}")
        self.window = window
        self.lookback = lookback
        self.gain = gain
        column = FEATURE_NAMES.index("log_return")
        self._columns = [w * N_BAR_FEATURES + column for w in range(window - lookback, window)]

    def act(self, observations: Observations) -> Actions:
        """One action per row."""
        momentum = observations[:, self._columns].astype(np.float64).sum(axis=1)
        return np.tanh(self.gain * momentum)


def make_policy(name: str, *, window: int) -> Policy:
    """The policy registered under ``name``."""
    if name == "momentum":
        return MomentumPolicy(window=window)
    raise ValueError(f"unknown policy {name!r} (known: momentum)")
