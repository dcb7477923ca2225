"""Action semantics of the plan: clipping, smoothing and the hold zone.

A raw action is a float in [-1, 1] per symbol. It is smoothed by a moving
average over the symbol's last ``smoothing_window`` raw actions; the smoothed
value decides: ``a >= hold`` buys ``a`` of the available cash, ``a <= -hold``
sells ``|a|`` of the position, anything in between holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from numba import njit

from core.rules import TradingRules

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class ActionError(ValueError):
    """A raw action that cannot be interpreted."""


class ActionKind(IntEnum):
    """What a smoothed action asks for."""

    HOLD = 0
    BUY = 1
    SELL = 2

    @property
    def label(self) -> str:
        """Lower-case name used on the wire and in reports."""
        return self.name.lower()


def clip_actions(raw: npt.ArrayLike) -> FloatArray:
    """Return raw actions clipped to [-1, 1]; NaN or infinite actions are an error."""
    values = np.asarray(raw, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ActionError(f"actions must be finite numbers, got {values[~np.isfinite(values)]}")
    return np.clip(values, -1.0, 1.0)


def classify(smoothed: npt.ArrayLike, hold_threshold: float) -> npt.NDArray[np.int8]:
    """Return the ActionKind code of each smoothed action (hold zone |a| < threshold)."""
    a = np.asarray(smoothed, dtype=np.float64)
    kinds = np.zeros(a.shape, dtype=np.int8)
    kinds[a >= hold_threshold] = ActionKind.BUY
    kinds[a <= -hold_threshold] = ActionKind.SELL
    return kinds


@dataclass(frozen=True, slots=True)
class SmoothingState:
    """The last raw actions of each symbol, oldest first, and how many are real.

    ``history`` is ``[n, window]``; only its last ``count[i]`` entries of row
    ``i`` are actions, the rest are zero padding.
    """

    history: FloatArray
    count: IntArray

    @classmethod
    def empty(cls, n_symbols: int, window: int) -> SmoothingState:
        """A state with no actions seen yet."""
        return cls(np.zeros((n_symbols, window)), np.zeros(n_symbols, dtype=np.int64))


def smooth(
    state: SmoothingState, raw: npt.ArrayLike, active: npt.ArrayLike | None = None
) -> tuple[SmoothingState, FloatArray]:
    """Push one raw action per symbol and return the new state and the smoothed actions.

    The smoothed action is the mean of the last ``window`` raw actions (fewer
    at the start). Symbols where ``active`` is False (no bar this step) keep
    their history and get a smoothed action of 0 (hold).
    """
    a = clip_actions(raw)
    n = state.history.shape[0]
    if a.shape != (n,):
        raise ActionError(f"expected {n} actions, got shape {a.shape}")
    act = np.ones(n, dtype=np.bool_) if active is None else np.asarray(active, dtype=np.bool_)
    history, count, smoothed = state.history.copy(), state.count.copy(), np.zeros(n)
    smooth_into(history, count, a, act, smoothed)
    return SmoothingState(history, count), smoothed


@njit(cache=True)
def smooth_into(
    history: FloatArray,
    count: IntArray,
    raw: FloatArray,
    active: npt.NDArray[np.bool_],
    smoothed: FloatArray,
) -> None:
    """The smoothing rule in place (the kernel behind ``smooth``); refuses non-finite actions."""
    n, window = history.shape
    for i in range(n):
        if not np.isfinite(raw[i]):
            raise ValueError("actions must be finite numbers in [-1, 1]")
        if not active[i]:
            smoothed[i] = 0.0
            continue
        for k in range(window - 1):
            history[i, k] = history[i, k + 1]
        history[i, window - 1] = min(1.0, max(-1.0, raw[i]))
        count[i] = min(count[i] + 1, window)
        total = 0.0
        for k in range(window - count[i], window):
            total += history[i, k]
        smoothed[i] = total / count[i]


def smoothing_for(rules: TradingRules, n_symbols: int) -> SmoothingState:
    """An empty smoothing state sized by the rules."""
    return SmoothingState.empty(n_symbols, rules.smoothing_window)
