"""One step of the design's step protocol on arrays, for the environments.

``advance`` runs, for every symbol at once, exactly the rules the services
run on events: smoothing (``core.actions.smooth_into``), execution at the
next open (``core.execution.execute_into``), the ledger's position and cost
updates (``core.execution.apply_into``), marking at the close
(``core.execution.mark_equity``) and the account features
(``core.features.account_into``). It is one compiled call, so an
environment step has no Python loop over symbols.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from core.actions import smooth_into
from core.execution import apply_into, execute_into, mark_equity
from core.features import account_into

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@njit(cache=True)
def advance(  # noqa: PLR0913 - a kernel takes its buffers
    raw: FloatArray,
    t: int,
    present: BoolArray,
    open_px: FloatArray,
    close: FloatArray,
    window_features: npt.NDArray[np.float32],
    history: FloatArray,
    count: npt.NDArray[np.int64],
    smoothed: FloatArray,
    position: FloatArray,
    cost: FloatArray,
    last_close: FloatArray,
    cash: float,
    hold: float,
    max_pct: float,
    min_trade: float,
    fee_rate: float,
    slippage: float,
    lot: float,
    safety: float,
    kind: npt.NDArray[np.int8],
    quantity: FloatArray,
    price: FloatArray,
    notional: FloatArray,
    fee: FloatArray,
    requested: FloatArray,
    skip: npt.NDArray[np.int8],
    clip: npt.NDArray[np.int8],
    realized: FloatArray,
    observation: npt.NDArray[np.float32],
) -> tuple[float, float]:
    """Decide on bar t with ``raw``, fill at t+1's open, mark at its close; return (cash, equity).

    Writes the observation of t+1 into ``observation``.
    """
    # 1. The agent's action on bar t, smoothed (no action where t has no bar).
    smooth_into(history, count, raw, present[t], smoothed)
    # 2. Orders fill at the opens of t+1 (NaN where no bar) against the book.
    cash = execute_into(
        smoothed, position, cash, open_px[t + 1], last_close,
        hold, max_pct, min_trade, fee_rate, slippage, lot, safety,
        kind, quantity, price, notional, fee, requested, skip, clip,
    )  # fmt: skip
    apply_into(quantity, notional, fee, position, cost, realized)
    # 3. Mark the book at the closes of t+1 (a symbol without a bar keeps its last close).
    for i in range(position.shape[0]):
        if present[t + 1, i]:
            last_close[i] = close[t + 1, i]
    equity = mark_equity(cash, position, last_close)
    # 4. The observation of t+1: the precomputed feature window and the account.
    width = window_features.shape[2]
    observation[:, :width] = window_features[t + 1]
    account_into(position, last_close, cost, cash, equity, observation, width)
    return cash, equity
