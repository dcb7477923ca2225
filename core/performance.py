"""Performance measures: Sharpe ratio, maximum drawdown, win rate, returns.

Definitions (docs/trading-rules.md): returns are simple per-step returns of
the equity curve; Sharpe is their mean over their sample standard deviation
(ddof=1) times sqrt(periods per year), with a zero risk-free rate, and 0 when
there are fewer than two returns or no variation; maximum drawdown is the
largest fall from a running peak as a positive fraction of that peak; win
rate is the share of closing (sell) trades whose realised P&L, fees
included, is positive.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def step_returns(equity: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Simple returns between consecutive equity values."""
    curve = np.asarray(equity, dtype=np.float64)
    if curve.size < 2:
        return np.zeros(0)
    if np.any(curve <= 0):
        raise ValueError("equity must stay positive to compute returns")
    return curve[1:] / curve[:-1] - 1.0


def sharpe_ratio(returns: npt.ArrayLike, periods_per_year: int) -> float:
    """Annualised Sharpe ratio of per-step returns (risk-free rate 0)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    if sd < 1e-12:
        return 0.0
    return float(np.mean(r)) / sd * math.sqrt(periods_per_year)


def max_drawdown(equity: npt.ArrayLike) -> float:
    """Largest peak-to-trough fall of the equity curve, as a fraction of the peak."""
    curve = np.asarray(equity, dtype=np.float64)
    if curve.size == 0:
        return 0.0
    peak = np.maximum.accumulate(curve)
    return float(np.max((peak - curve) / peak))


def win_rate(winning_trades: int, closed_trades: int) -> float:
    """Share of closed trades that made money (0 when none closed)."""
    return winning_trades / closed_trades if closed_trades else 0.0


def total_return(initial: float, final: float) -> float:
    """Final over initial equity, minus one."""
    return final / initial - 1.0


def buy_and_hold_equity(close: npt.ArrayLike, initial: float) -> npt.NDArray[np.float64]:
    """Equity of an equal-weight buy-and-hold of every column, one point per row of ``close``.

    ``close`` is ``[T, n]`` with NaN where a symbol has no bar. Each symbol gets
    ``initial / n`` at its first close and is then held (valued at its last
    close); a symbol's share is cash until its first bar. No fees: the
    benchmark a fleet is put beside.
    """
    prices = np.asarray(close, dtype=np.float64)
    if prices.ndim != 2 or prices.shape[1] == 0:
        raise ValueError(f"close must be [T, n] with n >= 1, got shape {prices.shape}")
    steps, n = prices.shape
    held = np.ones((steps, n))
    for j in range(n):
        seen = np.flatnonzero(np.isfinite(prices[:, j]))
        if seen.size == 0:
            continue
        first = seen[0]
        filled = prices[:, j].copy()
        for t in range(first + 1, steps):  # carry the last close forward
            if not np.isfinite(filled[t]):
                filled[t] = filled[t - 1]
        held[first:, j] = filled[first:] / filled[first]
    return initial / n * held.sum(axis=1)
