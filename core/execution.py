"""Simulated execution: orders decided on bar t fill at bar t+1's open.

One vectorised function, ``execute``, turns the smoothed actions of one step
into fills and skips for every symbol at once; the portfolio-manager service
and the gymnasium environments both call it. The rules, in order
(docs/trading-rules.md):

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
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

import numpy as np
import numpy.typing as npt

from core.actions import ActionKind, classify
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


def fill_prices(open_px: FloatArray, rules: TradingRules) -> tuple[FloatArray, FloatArray]:
    """Return (buy price, sell price) at the open with slippage against the trader."""
    return open_px * (1.0 + rules.slippage_rate), open_px * (1.0 - rules.slippage_rate)


def _round_lot(quantity: FloatArray, lot: float) -> FloatArray:
    if lot <= 0.0:
        return quantity
    return np.floor(quantity / lot) * lot


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
    a = np.clip(np.asarray(target, dtype=np.float64), -1.0, 1.0)
    n = a.shape[0]
    kind = classify(a, rules.hold_threshold)
    tradable = np.isfinite(open_px) & (open_px > 0)
    skip = np.zeros(n, dtype=np.int8)
    clip = np.zeros(n, dtype=np.int8)
    has_order = kind != ActionKind.HOLD
    skip[has_order & ~tradable] = SkipReason.NO_BAR

    px = np.where(tradable, open_px, 0.0)
    mark = np.where(tradable, open_px, last_close)
    buy_px, sell_px = fill_prices(px, rules)
    quantity = np.zeros(n)
    requested = np.zeros(n)
    price = np.full(n, np.nan)

    # Sells: a fraction |a| of the position.
    sell = (kind == ActionKind.SELL) & tradable
    no_position = sell & (position <= 0.0)
    skip[no_position] = SkipReason.NO_POSITION
    sell &= ~no_position
    sell_q = np.where(sell, _round_lot(-a * np.where(sell, position, 0.0), rules.lot_size), 0.0)
    requested[sell] = a[sell] * position[sell]
    small = sell & ((sell_q <= 0.0) | (sell_q * sell_px < rules.min_trade_value))
    skip[small] = SkipReason.BELOW_MIN_TRADE
    sell &= ~small
    quantity[sell] = -sell_q[sell]
    price[sell] = sell_px[sell]
    sell_notional = np.where(sell, sell_q * sell_px, 0.0)
    cash_available = cash + float(np.sum(sell_notional * (1.0 - rules.fee_rate)))

    # Buys: a * cash, capped by the position limit, then scaled pro rata to the cash.
    buy = (kind == ActionKind.BUY) & tradable
    # Only held positions are marked: a symbol with no bar yet has last_close NaN.
    held_value = np.where(position > 0.0, position * mark, 0.0)
    equity_open = cash + float(np.sum(held_value))
    safe_px = np.where(buy, buy_px, 1.0)
    wanted_q = np.where(buy, a * cash_available / (1.0 + rules.fee_rate) / safe_px, 0.0)
    requested[buy] = wanted_q[buy]
    room_q = np.maximum(0.0, rules.max_position_pct * equity_open - held_value) / np.where(
        buy, px, 1.0
    )
    at_cap = buy & (room_q <= 0.0)
    skip[at_cap] = SkipReason.AT_POSITION_CAP
    buy &= ~at_cap
    no_cash = buy & (cash_available <= 0.0)
    skip[no_cash] = SkipReason.NO_CASH
    buy &= ~no_cash
    capped = buy & (wanted_q > room_q)
    clip[capped] |= ClipReason.POSITION_CAP
    buy_q = np.where(buy, np.minimum(wanted_q, room_q), 0.0)
    cost = float(np.sum(buy_q * buy_px * (1.0 + rules.fee_rate)))
    budget = cash_available * (1.0 - rules.cash_safety)
    if cost > budget:
        buy_q = buy_q * (budget / cost)
        if cost > cash_available:  # not when only the safety margin was taken off
            clip[buy] |= ClipReason.INSUFFICIENT_CASH
    buy_q = _round_lot(buy_q, rules.lot_size)
    small = buy & ((buy_q <= 0.0) | (buy_q * buy_px < rules.min_trade_value))
    skip[small] = SkipReason.BELOW_MIN_TRADE
    clip[small] = ClipReason.NONE
    buy &= ~small
    quantity[buy] = buy_q[buy]
    price[buy] = buy_px[buy]

    notional = np.where(quantity != 0.0, np.abs(quantity) * np.nan_to_num(price), 0.0)
    fee = notional * rules.fee_rate
    cash_after = cash + float(np.sum(np.where(quantity < 0, notional - fee, -(notional + fee))))
    return Execution(
        kind=kind,
        quantity=quantity,
        price=price,
        notional=notional,
        fee=fee,
        requested_quantity=requested,
        skip=skip,
        clip=clip,
        cash_after=cash_after,
    )
