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
