"""Observation features, computed the same way offline and in serving.

``bar_features`` maps a block of bars ``[T, n]`` to features ``[T, n, F]``;
row t depends only on bars t - HISTORY .. t, so an agent that keeps the last
``window + HISTORY`` bars of a symbol computes exactly the rows that an
environment precomputes over the whole history. Missing bars carry the last
close forward for at most FILL_LIMIT steps (zero return, zero range); before a
symbol's first bar, or after a longer gap, every feature is 0 until it trades
again. Nothing here can produce NaN from valid bars.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FEATURE_NAMES = (
    "log_return",
    "gap",
    "range",
    "body",
    "volume_change",
    "trend_10",
)
N_BAR_FEATURES = len(FEATURE_NAMES)
LOOKBACK = 10
"""Bars averaged by ``trend_10`` beyond the row's own."""
FILL_LIMIT = LOOKBACK
"""A close is carried forward over at most this many missing bars."""
HISTORY = LOOKBACK + FILL_LIMIT
"""Rows of history a feature row depends on beyond its own."""
ACCOUNT_FEATURES = ("position_share", "cash_share", "unrealized_return")
CLIP = 5.0


def _ffill(values: FloatArray, present: BoolArray, limit: int = FILL_LIMIT) -> FloatArray:
    """Carry the last present value forward along axis 0 for at most ``limit`` rows.

    NaN before the first present value and beyond the limit.
    """
    t = values.shape[0]
    rows = np.arange(t)[:, None]
    index = np.where(present, rows, -1)
    np.maximum.accumulate(index, axis=0, out=index)
    filled = np.take_along_axis(values, np.maximum(index, 0), axis=0)
    return np.where((index >= 0) & (rows - index <= limit), filled, np.nan)


def bar_features(
    *,
    open_px: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray,
    present: BoolArray,
) -> FloatArray:
    """Features ``[T, n, F]`` of bars ``[T, n]`` (see FEATURE_NAMES), clipped to +-5."""
    c = _ffill(close, present)
    nan_row = np.full((1, c.shape[1]), np.nan)
    prev_c = np.vstack([nan_row, c[:-1]])
    seen = np.isfinite(c)
    started = seen & np.isfinite(prev_c)
    safe = np.where(seen, c, 1.0)
    safe_prev = np.where(started, prev_c, safe)
    o = np.where(present, open_px, safe)
    h = np.where(present, high, safe)
    lo = np.where(present, low, safe)
    log_v = np.log1p(np.where(present, volume, 0.0))
    log_v = np.where(present, log_v, np.nan)
    log_v = _ffill(log_v, present)
    prev_v = np.vstack([nan_row, log_v[:-1]])
    padded = np.vstack([np.full((LOOKBACK, c.shape[1]), np.nan), c])
    windows = np.lib.stride_tricks.sliding_window_view(padded, LOOKBACK + 1, axis=0)
    window_n = np.sum(np.isfinite(windows), axis=-1)
    window_sum = np.nansum(windows, axis=-1)
    sma = np.where(window_n > 0, window_sum / np.maximum(window_n, 1), safe)
    features = np.stack(
        [
            np.log(safe / safe_prev),
            np.where(present & started, np.log(o / safe_prev), 0.0),
            np.log(h / lo),
            np.log(safe / o),
            np.where(present & started, np.nan_to_num(log_v - prev_v), 0.0),
            np.log(safe / sma),
        ],
        axis=-1,
    )
    features = np.where(seen[..., None], features, 0.0)
    return np.clip(features, -CLIP, CLIP)


def account_features(
    *,
    quantity: FloatArray,
    close: FloatArray,
    cost: FloatArray,
    cash: float,
    equity: float,
) -> FloatArray:
    """Per-symbol ``[n, 3]``: position value / equity, cash / equity, unrealised return."""
    out = np.zeros((quantity.shape[0], len(ACCOUNT_FEATURES)))
    account_into(quantity, close, cost, float(cash), float(equity), out, 0)
    return out


@njit(cache=True)
def account_into(
    quantity: FloatArray,
    close: FloatArray,
    cost: FloatArray,
    cash: float,
    equity: float,
    out: npt.NDArray[np.floating],
    column: int,
) -> None:
    """The account features written into ``out[:, column:column + 3]`` (the kernel)."""
    eq = equity if equity > 0.0 else 1.0
    for i in range(quantity.shape[0]):
        price = close[i] if np.isfinite(close[i]) else 0.0
        value = quantity[i] * price
        unrealized = value / cost[i] - 1.0 if cost[i] > 0.0 else 0.0
        out[i, column] = value / eq
        out[i, column + 1] = cash / eq
        out[i, column + 2] = min(CLIP, max(-CLIP, unrealized))


def observation(window_features: FloatArray, account: FloatArray) -> npt.NDArray[np.float32]:
    """Observation rows ``[n, W*F + 3]``: the flattened feature window and the account."""
    n = window_features.shape[0]
    return np.concatenate([window_features.reshape(n, -1), account], axis=1).astype(np.float32)


def observe_window(
    *,
    open_px: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray,
    present: BoolArray,
    window: int,
    quantity: FloatArray,
    cost: FloatArray,
    cash: float,
    equity: float,
) -> npt.NDArray[np.float32]:
    """Observations ``[n, window*F + 3]`` at the last row of a block of bars ``[H, n]``.

    The block must hold at least ``window + HISTORY`` rows (or start at the
    beginning of the data) for the result to equal the precomputed features.
    """
    feats = bar_features(
        open_px=open_px, high=high, low=low, close=close, volume=volume, present=present
    )[-window:]
    last_close = _ffill(close, present)[-1]
    account = account_features(
        quantity=quantity, close=last_close, cost=cost, cash=cash, equity=equity
    )
    return observation(np.transpose(feats, (1, 0, 2)), account)


def window_features(
    *,
    open_px: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray,
    present: BoolArray,
    window: int,
) -> npt.NDArray[np.float32]:
    """Every step's feature window ``[T, n, window*F]`` (float32), precomputed once.

    Row t holds the features of steps t-window+1 .. t, oldest first, with
    zeros before the first step: the same layout and values as
    ``observe_window`` gives a serving agent at step t.
    """
    feats = bar_features(
        open_px=open_px, high=high, low=low, close=close, volume=volume, present=present
    )
    t, n, f = feats.shape
    padded = np.concatenate([np.zeros((window - 1, n, f)), feats], axis=0)
    out = np.empty((t, n, window * f), dtype=np.float32)
    for w in range(window):
        out[:, :, w * f : (w + 1) * f] = padded[w : w + t]
    return out
