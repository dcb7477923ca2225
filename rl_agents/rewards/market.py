"""Rolling statistics of a frame's closes, computed once per env like its features.

Every statistic at step t uses the closes up to t only (a missing bar carries
the last close forward), so a reward built from them sees no future bar. The
one exception is the volatility of the first two steps, which have fewer than
two returns: they take the first defined value (a scale, not a direction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MIN_VOLATILITY = 1e-4
"""Floor of a volatility (a symbol whose closes never move, or that has none)."""


@dataclass(frozen=True, slots=True)
class MarketStats:
    """The rolling statistics of a ``[T, n]`` frame, each ``[T, n]`` unless said otherwise."""

    returns: FloatArray
    """``log(close_t / close_{t-1})`` of the carried closes (0 at t = 0)."""
    volatility: FloatArray
    """Sample standard deviation of the last ``window`` log returns through t (>= the floor)."""
    trend: FloatArray
    """``log(close_t / close_{t - window}) / window``: the window's drift per step (from the
    first bar while t < window)."""
    low: FloatArray
    """Lowest close of the last ``window`` bars through t."""
    high: FloatArray
    """Highest close of the last ``window`` bars through t."""
    market_volatility: FloatArray
    """``[T]``: the mean volatility over the symbols."""
    high_volatility: BoolArray
    """``[T]``: the market volatility exceeds ``threshold`` times its average through t."""


def carried_close(close: FloatArray, present: BoolArray) -> FloatArray:
    """``close`` with each missing bar replaced by the symbol's last close (its first one
    before it has any; NaN for a symbol without a single bar)."""
    steps, n = close.shape
    last = np.where(present, np.arange(steps)[:, None], -1)
    np.maximum.accumulate(last, axis=0, out=last)
    first = np.where(present.any(axis=0), present.argmax(axis=0), 0)
    last = np.where(last < 0, first[None, :], last)
    return close[last, np.arange(n)[None, :]]


def market_stats(
    close: FloatArray, present: BoolArray, window: int, threshold: float
) -> MarketStats:
    """The rolling statistics of closes ``[T, n]`` (NaN where ``present`` is False)."""
    c = carried_close(np.asarray(close, dtype=np.float64), np.asarray(present, dtype=bool))
    steps = c.shape[0]
    returns = np.zeros_like(c)
    returns[1:] = np.log(c[1:] / c[:-1])

    # Sums of the returns r_{t-window+1..t}, from prefix sums; r_0 does not exist.
    count = np.minimum(np.arange(steps), window).astype(np.float64)[:, None]
    s1, s2 = _window_sum(returns, window), _window_sum(returns * returns, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = (s2 - s1 * s1 / count) / (count - 1.0)
    volatility = np.sqrt(np.maximum(variance, 0.0))
    if steps > 2:
        volatility[:2] = volatility[2]
    volatility = np.fmax(np.nan_to_num(volatility, nan=MIN_VOLATILITY), MIN_VOLATILITY)

    back = np.maximum(np.arange(steps) - window, 0)
    trend = np.nan_to_num(np.log(c / c[back])) / window
    low, high = c.copy(), c.copy()
    for k in range(1, window):
        earlier = c[np.maximum(np.arange(steps) - k, 0)]
        np.fmin(low, earlier, out=low)
        np.fmax(high, earlier, out=high)

    market = volatility.mean(axis=1)
    average = np.cumsum(market) / np.arange(1, steps + 1)
    return MarketStats(
        returns=np.nan_to_num(returns),
        volatility=volatility,
        trend=trend,
        low=low,
        high=high,
        market_volatility=market,
        high_volatility=market > threshold * average,
    )


def _window_sum(x: FloatArray, window: int) -> FloatArray:
    """``sum(x[t - window + 1 .. t])`` for every t (fewer terms at the start)."""
    prefix = np.cumsum(x, axis=0)
    out = prefix.copy()
    out[window:] -= prefix[:-window]
    return out
