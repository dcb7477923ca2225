"""Simulated execution: orders decided on bar t fill at bar t+1's open.

One compiled kernel, ``execute_into``, turns the smoothed actions of one step
into fills and skips for every symbol at once; the portfolio-manager service
(through ``execute``) and the gymnasium environments (through
``core.simulation.advance``) both run it, so they cannot disagree. It is
compiled with numba (docs/architecture.md says why); it stays a pure function
of its inputs. The rules, in order (docs/trading-rules.md):

1. A symbol without a bar at the fill step does not trade (skip ``no_bar``).
2. Sells first: ``|a|`` of the position at ``open * (1 - slippage)``; no
   position means skip ``no_position`` (no shorting).
3. Buys: each asks for ``a * cash`` (cash after the sells, fees included) at
   ``open * (1 + slippage)``; a buy that would take the position above
   ``max_position_pct`` of equity (marked at the open) is clipped
   (``position_cap``), or skipped (``at_position_cap``) when there is no room.
4. Buys competing for the same cash: when they ask for more than there is,
   every buy is scaled by the same factor (pro rata, ``insufficient_cash``).
   This is the one deterministic allocation rule; it favours no symbol.
5. An order whose notional is below ``min_trade_value`` is skipped
   (``below_min_trade``); quantities are rounded down to ``lot_size``.
6. The fee is ``fee_rate * notional`` on every fill.

Cash moves in the ledger's order: sells in symbol order, then buys in symbol
order, each as ``(cash + notional) - fee`` or ``(cash - notional) - fee``, so
the kernel's cash equals the fold of the ledger's events bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum, IntFlag

import numpy as np
import numpy.typing as npt
from numba import njit

from core.rules import TradingRules

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class SkipReason(IntEnum):
    """Why an order was not filled (0: it was, or there was no order)."""

    NONE = 0
    NO_BAR = 1
    NO_POSITION = 2
    BELOW_MIN_TRADE = 3
    AT_POSITION_CAP = 4
    NO_CASH = 5
    END_OF_DATA = 6

    @property
    def label(self) -> str:
        """Lower-case name used on the wire and in reports."""
        return self.name.lower()


class ClipReason(IntFlag):
    """Why a filled order is smaller than asked (bit flags)."""

    NONE = 0
    POSITION_CAP = 1
    INSUFFICIENT_CASH = 2

    def labels(self) -> tuple[str, ...]:
        """Lower-case names of the flags set, in a fixed order."""
        return tuple(
            f.name.lower()
            for f in (ClipReason.POSITION_CAP, ClipReason.INSUFFICIENT_CASH)
            if f.name and self & f
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """Result of one step's execution, one entry per symbol.

    ``quantity`` is signed (buy > 0, sell < 0) and 0 where nothing filled.
    ``kind`` is the ActionKind of the order (HOLD where there was none).
    """

    kind: npt.NDArray[np.int8]
    quantity: FloatArray
    price: FloatArray
    notional: FloatArray
    fee: FloatArray
    requested_quantity: FloatArray
    skip: npt.NDArray[np.int8]
    clip: npt.NDArray[np.int8]
    cash_after: float

    @property
    def filled(self) -> BoolArray:
        """Symbols that traded."""
        return self.quantity != 0.0


HOLD, BUY, SELL = 0, 1, 2  # ActionKind codes, as plain ints for the kernel
NO_BAR, NO_POSITION, BELOW_MIN_TRADE, AT_POSITION_CAP, NO_CASH = 1, 2, 3, 4, 5
CAPPED, SHORT_OF_CASH = 1, 2


def fill_prices(open_px: FloatArray, rules: TradingRules) -> tuple[FloatArray, FloatArray]:
    """Return (buy price, sell price) at the open with slippage against the trader."""
    return open_px * (1.0 + rules.slippage_rate), open_px * (1.0 - rules.slippage_rate)


@njit(cache=True)
def _round_lot(quantity: float, lot: float) -> float:
    if lot <= 0.0:
        return quantity
    return float(np.floor(quantity / lot) * lot)


@njit(cache=True)
def execute_into(  # noqa: PLR0913 - a kernel takes its buffers
    target: FloatArray,
    position: FloatArray,
    cash: float,
    open_px: FloatArray,
    last_close: FloatArray,
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
) -> float:
    """Fill one step's orders into the output arrays; return the cash after the fills."""
    n = target.shape[0]
    equity_open = cash
    for i in range(n):
        a = min(1.0, max(-1.0, target[i]))
        kind[i] = BUY if a >= hold else SELL if a <= -hold else HOLD
        quantity[i] = 0.0
        price[i] = np.nan
        notional[i] = 0.0
        fee[i] = 0.0
        requested[i] = 0.0
        skip[i] = 0
        clip[i] = 0
        tradable = np.isfinite(open_px[i]) and open_px[i] > 0.0
        if position[i] > 0.0:
            equity_open += position[i] * (open_px[i] if tradable else last_close[i])
        if kind[i] != HOLD and not tradable:
            skip[i] = NO_BAR

    # Sells first: |a| of the position.
    available = cash
    for i in range(n):
        if kind[i] != SELL or skip[i] != 0:
            continue
        if position[i] <= 0.0:
            skip[i] = NO_POSITION
            continue
        a = max(-1.0, target[i])
        requested[i] = a * position[i]
        q = min(_round_lot(-a * position[i], lot), position[i])
        px = open_px[i] * (1.0 - slippage)
        if q <= 0.0 or q * px < min_trade:
            skip[i] = BELOW_MIN_TRADE
            continue
        quantity[i] = -q
        price[i] = px
        notional[i] = q * px
        fee[i] = notional[i] * fee_rate
        available += notional[i] * (1.0 - fee_rate)

    # Buys: a * cash, capped by the position limit, then scaled pro rata to the cash.
    cost = 0.0
    for i in range(n):
        if kind[i] != BUY or skip[i] != 0:
            continue
        a = min(1.0, target[i])
        px = open_px[i] * (1.0 + slippage)
        wanted = a * available / (1.0 + fee_rate) / px
        requested[i] = wanted
        room = max(0.0, max_pct * equity_open - position[i] * open_px[i]) / open_px[i]
        if room <= 0.0:
            skip[i] = AT_POSITION_CAP
            continue
        if available <= 0.0:
            skip[i] = NO_CASH
            continue
        if wanted > room:
            wanted = room
            clip[i] = CAPPED
        quantity[i] = wanted
        cost += wanted * px * (1.0 + fee_rate)
    budget = available * (1.0 - safety)
    scale = budget / cost if cost > budget else 1.0
    short_of_cash = cost > available
    for i in range(n):
        if kind[i] != BUY or skip[i] != 0:
            continue
        px = open_px[i] * (1.0 + slippage)
        q = _round_lot(quantity[i] * scale, lot)
        if short_of_cash:
            clip[i] |= SHORT_OF_CASH
        if q <= 0.0 or q * px < min_trade:
            skip[i] = BELOW_MIN_TRADE
            clip[i] = 0
            quantity[i] = 0.0
            continue
        quantity[i] = q
        price[i] = px
        notional[i] = q * px
        fee[i] = notional[i] * fee_rate

    # Cash in the ledger's order: sells, then buys.
    after = cash
    for i in range(n):
        if quantity[i] < 0.0:
            after = after + notional[i] - fee[i]
    for i in range(n):
        if quantity[i] > 0.0:
            after = after - notional[i] - fee[i]
    return after


@njit(cache=True)
def apply_into(
    quantity: FloatArray,
    notional: FloatArray,
    fee: FloatArray,
    position: FloatArray,
    cost: FloatArray,
    realized: FloatArray,
) -> None:
    """Apply one step's fills to positions and cost bases, as ``core.ledger.evolve`` does.

    ``realized`` receives each sell's realised P&L (0 elsewhere).
    """
    for i in range(quantity.shape[0]):
        realized[i] = 0.0
        q = quantity[i]
        if q > 0.0:
            position[i] = position[i] + q
            cost[i] = cost[i] + notional[i] + fee[i]
        elif q < 0.0:
            held = position[i]
            sold = min(-q, held)
            avg = cost[i] / held if held > 0.0 else 0.0
            cost_sold = avg * sold
            realized[i] = notional[i] - fee[i] - cost_sold
            remaining = held - sold
            if remaining > 0.0:
                position[i] = remaining
                cost[i] = cost[i] - cost_sold
            else:
                position[i] = 0.0
                cost[i] = 0.0


@njit(cache=True)
def mark_equity(cash: float, position: FloatArray, close: FloatArray) -> float:
    """Cash plus every held position at its close, summed in symbol order."""
    value = 0.0
    for i in range(position.shape[0]):
        if position[i] > 0.0:
            value += position[i] * close[i]
    return cash + value


def execute(
    *,
    target: npt.ArrayLike,
    position: FloatArray,
    cash: float,
    open_px: FloatArray,
    last_close: FloatArray,
    rules: TradingRules,
) -> Execution:
    """Fill the smoothed actions ``target`` (decided at t) at the opens of t+1.

    ``open_px`` holds NaN for symbols without a bar at t+1; ``last_close`` is
    each symbol's latest known close, used to value positions that cannot
    trade. ``position`` is the quantity held (never negative).
    """
    a = np.ascontiguousarray(target, dtype=np.float64)
    n = a.shape[0]
    out = Execution(
        kind=np.zeros(n, dtype=np.int8),
        quantity=np.zeros(n),
        price=np.zeros(n),
        notional=np.zeros(n),
        fee=np.zeros(n),
        requested_quantity=np.zeros(n),
        skip=np.zeros(n, dtype=np.int8),
        clip=np.zeros(n, dtype=np.int8),
        cash_after=0.0,
    )
    cash_after = execute_into(
        a,
        np.ascontiguousarray(position, dtype=np.float64),
        float(cash),
        np.ascontiguousarray(open_px, dtype=np.float64),
        np.ascontiguousarray(last_close, dtype=np.float64),
        *kernel_rules(rules),
        out.kind,
        out.quantity,
        out.price,
        out.notional,
        out.fee,
        out.requested_quantity,
        out.skip,
        out.clip,
    )
    return replace(out, cash_after=float(cash_after))


def kernel_rules(rules: TradingRules) -> tuple[float, float, float, float, float, float, float]:
    """The rules as the kernel's scalar arguments, in its order."""
    return (
        rules.hold_threshold,
        rules.max_position_pct,
        rules.min_trade_value,
        rules.fee_rate,
        rules.slippage_rate,
        rules.lot_size,
        rules.cash_safety,
    )
