"""The portfolio aggregate's decisions: commands in, events out.

Each function reads a ``PortfolioState`` and returns the events that the step
produces; the caller folds them with ``core.ledger.evolve``. The portfolio
manager service runs exactly these, in the order of docs/architecture.md:

1. ``fill_pending`` at the bars of step t (orders decided at t-1),
2. ``mark`` at the closes of t,
3. ``record_decisions`` for the agents' actions of t,
4. ``close_run`` after the last step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from core.actions import ActionKind, classify
from core.events import (
    AccountMarked,
    ActionDecided,
    DecisionRecorded,
    Event,
    Holding,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
    event_id,
)
from core.execution import ClipReason, SkipReason, execute
from core.ledger import PortfolioState
from core.rules import TradingRules

FloatArray = npt.NDArray[np.float64]

SIDES = {ActionKind.BUY: "buy", ActionKind.SELL: "sell", ActionKind.HOLD: "hold"}


def open_portfolio(
    *,
    run_id: str,
    portfolio_id: str,
    symbols: Sequence[str],
    rules: TradingRules,
    cause_id: str,
    event_time: int,
) -> PortfolioOpened:
    """The event that opens a portfolio with the rules' initial cash."""
    return PortfolioOpened(
        event_id=event_id(run_id, -1, "opened"),
        cause_id=cause_id,
        run_id=run_id,
        event_time=event_time,
        portfolio_id=portfolio_id,
        initial_cash=rules.initial_cash,
        symbols=tuple(symbols),
    )


def fill_pending(
    state: PortfolioState,
    *,
    step: int,
    event_time: int,
    open_px: FloatArray,
    last_close: FloatArray,
    rules: TradingRules,
) -> list[Event]:
    """Fill or skip every pending order at the opens of ``step`` (NaN: no bar)."""
    if not state.pending:
        return []
    symbols = state.symbols
    target = np.array([state.pending[s].target if s in state.pending else 0.0 for s in symbols])
    position = np.array([state.quantity(s) for s in symbols])
    result = execute(
        target=target,
        position=position,
        cash=state.cash,
        open_px=open_px,
        last_close=last_close,
        rules=rules,
    )
    events: list[Event] = []
    # The ledger's order: sells in symbol order, then buys (see core.execution).
    sells_first = sorted(range(len(symbols)), key=lambda i: result.kind[i] != ActionKind.SELL)
    for i in sells_first:
        symbol = symbols[i]
        order = state.pending.get(symbol)
        if order is None:
            continue
        side = SIDES[ActionKind(int(result.kind[i]))]
        common = {
            "cause_id": order.decision_id,
            "run_id": state.run_id,
            "event_time": event_time,
            "symbol": symbol,
            "step": step,
            "side": side,
        }
        if result.quantity[i] != 0.0:
            events.append(
                OrderFilled(
                    event_id=event_id(state.run_id, step, "fill", symbol),
                    quantity=abs(float(result.quantity[i])),
                    price=float(result.price[i]),
                    notional=float(result.notional[i]),
                    fee=float(result.fee[i]),
                    requested_quantity=abs(float(result.requested_quantity[i])),
                    clipped_by=ClipReason(int(result.clip[i])).labels(),
                    **common,  # type: ignore[arg-type]
                )
            )
        else:
            events.append(
                OrderSkipped(
                    event_id=event_id(state.run_id, step, "skip", symbol),
                    reason=SkipReason(int(result.skip[i])).label,
                    requested_quantity=abs(float(result.requested_quantity[i])),
                    **common,  # type: ignore[arg-type]
                )
            )
    return events


def mark(
    state: PortfolioState,
    *,
    step: int,
    event_time: int,
    last_close: FloatArray,
    bars: int,
    cause_id: str,
) -> AccountMarked:
    """The account snapshot of ``step`` at each symbol's latest close."""
    holdings = []
    value = 0.0
    for i, symbol in enumerate(state.symbols):
        position = state.positions.get(symbol)
        if position is None or position.quantity <= 0:
            continue
        close = float(last_close[i])
        market = position.quantity * close
        value += market
        holdings.append(
            Holding(
                symbol=symbol,
                quantity=position.quantity,
                cost=position.cost,
                avg_cost=position.avg_cost,
                close=close,
                unrealized_pnl=market - position.cost,
            )
        )
    return AccountMarked(
        event_id=event_id(state.run_id, step, "marked"),
        cause_id=cause_id,
        run_id=state.run_id,
        event_time=event_time,
        step=step,
        bars=bars,
        cash=state.cash,
        equity=state.cash + value,
        holdings=tuple(holdings),
    )


def record_decisions(
    state: PortfolioState,
    *,
    step: int,
    event_time: int,
    actions: Sequence[ActionDecided],
    rules: TradingRules,
) -> list[DecisionRecorded]:
    """Accept the actions of ``step`` (one per symbol, in portfolio order)."""
    order = {s: i for i, s in enumerate(state.symbols)}
    ranked = sorted(actions, key=lambda a: order[a.symbol])
    kinds = classify([a.smoothed for a in ranked], rules.hold_threshold)
    return [
        DecisionRecorded(
            event_id=event_id(state.run_id, step, "decision", a.symbol),
            cause_id=a.event_id,
            run_id=state.run_id,
            event_time=event_time,
            symbol=a.symbol,
            step=step,
            raw=a.raw,
            smoothed=a.smoothed,
            kind=SIDES[ActionKind(int(k))],
            policy=a.policy,
            policy_version=a.policy_version,
        )
        for a, k in zip(ranked, kinds, strict=True)
    ]


def close_run(state: PortfolioState, *, step: int, event_time: int, cause_id: str) -> list[Event]:
    """Expire orders left pending at the end of the data and close the portfolio."""
    events: list[Event] = [
        OrderSkipped(
            event_id=event_id(state.run_id, step + 1, "skip", symbol),
            cause_id=order.decision_id,
            run_id=state.run_id,
            event_time=event_time,
            symbol=symbol,
            step=step + 1,
            side="buy" if order.target > 0 else "sell",
            reason=SkipReason.END_OF_DATA.label,
            requested_quantity=0.0,
        )
        for symbol, order in sorted(state.pending.items())
    ]
    events.append(
        PortfolioClosed(
            event_id=event_id(state.run_id, step, "closed"),
            cause_id=cause_id,
            run_id=state.run_id,
            event_time=event_time,
            steps=step + 1,
            final_equity=state.equity,
        )
    )
    return events
