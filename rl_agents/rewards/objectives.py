"""The five objectives of one step, per symbol, in units of return (docs/rewards.md).

Each function takes ``[n]`` arrays (one entry per symbol) and returns one;
no state, no randomness. Profit is the symbol's share of the step's return;
risk is a share of equity too; activity, timing and exploration are scores
in [-1, 1] times a symbol's ``unit``: the one-step standard deviation of the
P&L of an equal share of the book in the symbol (``unit``). So every
objective is the size of a step's return, and so is their weighted sum.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from core.collapse import BINS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

VAR_Z = 1.6448536269514722
"""One-sided 95% quantile of the standard normal: parametric VaR95 = VAR_Z * sigma."""


def unit(volatility: FloatArray, n_symbols: int, max_position_pct: float) -> FloatArray:
    """The return scale of each symbol: its volatility times an equal share of the book,
    ``min(max_position_pct, 1 / n)`` of equity."""
    return volatility * min(max_position_pct, 1.0 / n_symbols)


def tent(x: FloatArray, target: float) -> FloatArray:
    """A score in [-1, 1] of shares ``x`` in [0, 1]: 1 at ``target``, -1 at 0 and at 1,
    linear in between."""
    below = 2.0 * x / target - 1.0
    above = 1.0 - 2.0 * (x - target) / (1.0 - target)
    return np.clip(np.where(x <= target, below, above), -1.0, 1.0)


def saturating(x: FloatArray, target: float) -> FloatArray:
    """A score in [-1, 1] of shares ``x``: -1 at 0, rising linearly to 1 at ``target`` and
    staying there."""
    return 2.0 * np.minimum(x / target, 1.0) - 1.0


def drawdown_excess(equity: float, peak: float, max_drawdown: float) -> float:
    """How far the drawdown ``1 - equity / peak`` is past ``max_drawdown`` (0 within it)."""
    return max(0.0, 1.0 - equity / peak - max_drawdown)


def book_var(exposure: FloatArray, recent: FloatArray) -> tuple[float, FloatArray]:
    """The book's one-step parametric VaR95 as a share of equity, and each position's part
    of it (Euler allocation; the parts sum to the VaR).

    ``recent`` ``[W, n]`` are the last log returns of the symbols: the book's
    return on each of those steps with today's ``exposure`` ``[n]`` gives its
    standard deviation, and symbol i's part is ``VAR_Z * e_i * cov(r_i, r_book)
    / sd(r_book)``. Correlations count: a diversified book is charged less than
    the sum of its positions' VaRs. Fewer than two returns: no VaR.
    """
    n = exposure.shape[0]
    if recent.shape[0] < 2:
        return 0.0, np.zeros(n)
    centred = recent - recent.mean(axis=0)
    book = centred @ exposure
    sd = math.sqrt(float(book @ book) / (recent.shape[0] - 1))
    if sd == 0.0:
        return 0.0, np.zeros(n)
    cov = centred.T @ book / (recent.shape[0] - 1)
    return VAR_Z * sd, VAR_Z * exposure * cov / sd


def risk(
    returns: FloatArray, var_parts: FloatArray, deepening: float, var_limit: float
) -> FloatArray:
    """Risk charged beyond the budget, <= 0 for every symbol.

    ``deepening`` is how much the step deepened the drawdown past its limit
    (``drawdown_excess`` after minus before, when positive); it is split among
    the symbols that lost, by their losses. What the book's VaR (the sum of
    ``var_parts``, from ``book_var``) exceeds ``var_limit`` by is split among
    the positions that add to it, by their parts.
    """
    n = returns.shape[0]
    loss = np.maximum(-returns, 0.0)
    total_loss = loss.sum()
    shares = loss / total_loss if total_loss > 0.0 else np.full(n, 1.0 / n)
    drawdown = -max(deepening, 0.0) * shares
    over = float(var_parts.sum()) - var_limit
    adding = np.maximum(var_parts, 0.0)
    at_risk = -over * adding / adding.sum() if over > 0.0 else np.zeros(n)
    return drawdown + at_risk


def activity(fill_rate: FloatArray, scale: FloatArray, target: float) -> FloatArray:
    """``scale * tent(fill_rate, target)``: most at the target trade frequency, least when
    the symbol never or always trades."""
    return scale * tent(fill_rate, target)


def fill_quality(
    quantity: FloatArray, price: FloatArray, low: FloatArray, high: FloatArray
) -> FloatArray:
    """Quality in [0, 1] of each fill against the recent range of closes ``[low, high]``:
    ``1 - q`` for a buy and ``q`` for a sell, where ``q`` is the fill price's place in the
    range (0 at the low); NaN where nothing filled, 0.5 where the range is flat."""
    width = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        place = np.where(width > 0.0, np.clip((price - low) / width, 0.0, 1.0), 0.5)
    return np.where(quantity > 0.0, 1.0 - place, np.where(quantity < 0.0, place, np.nan))


def timing(quality: FloatArray, scale: FloatArray) -> FloatArray:
    """``scale * (2 * quality - 1)`` for each fill (buy low, sell high), 0 without one."""
    return np.where(np.isnan(quality), 0.0, scale * (2.0 * quality - 1.0))


def action_bins(actions: FloatArray) -> IntArray:
    """The ``core.collapse`` bin of each raw action (``BINS`` equal bins over [-1, 1])."""
    a = np.clip(actions, -1.0, 1.0)
    return np.minimum(((a + 1.0) / 2.0 * BINS).astype(np.int64), BINS - 1)


def diversity(bin_counts: IntArray) -> FloatArray:
    """Normalised entropy of each row of action-bin counts ``[n, BINS]``: the entropy over
    ``ln(min(count, BINS))``, the most the row's count of actions allows (NaN below two)."""
    total = bin_counts.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = bin_counts / total[:, None]
        entropy = -np.where(p > 0.0, p * np.log(p), 0.0).sum(axis=1)
        most = np.log(np.minimum(total, BINS))
        return np.where(total >= 2, entropy / most, np.nan)


def exploration(action_diversity: FloatArray, scale: FloatArray, target: float) -> FloatArray:
    """``scale * saturating(diversity, target)``: -scale for a constant action, +scale from
    the target diversity up; 0 where the diversity is not defined yet (NaN)."""
    known = ~np.isnan(action_diversity)
    return np.where(known, scale * saturating(np.nan_to_num(action_diversity), target), 0.0)
