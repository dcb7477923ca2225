"""The portfolio aggregate's decisions: commands in, events out."""

from __future__ import annotations

import numpy as np
import pytest

from core.events import (
    AccountMarked,
    ActionDecided,
    DecisionRecorded,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
)
from core.ledger import PortfolioState, fold
from core.portfolio import (
    close_run,
    fill_pending,
    mark,
    open_portfolio,
    record_decisions,
)
from core.rules import TradingRules

RUN = "run-7"
RULES = TradingRules(initial_cash=10_000.0)
NAN = float("nan")


def action(symbol: str, step: int, smoothed: float, raw: float | None = None) -> ActionDecided:
    return ActionDecided(
        event_id=f"{RUN}/{step}/action/{symbol}",
        cause_id=f"bar/{symbol}",
        run_id=RUN,
        event_time=1_000 + step,
        symbol=symbol,
        step=step,
        raw=smoothed if raw is None else raw,
        smoothed=smoothed,
        policy="test",
        policy_version="3",
    )


def new_portfolio(symbols: tuple[str, ...] = ("A", "B", "C")) -> PortfolioState:
    event = open_portfolio(
        run_id=RUN,
        portfolio_id="p1",
        symbols=symbols,
        rules=RULES,
        cause_id="started",
        event_time=0,
    )
    return fold([event])


def decide(state: PortfolioState, step: int, **smoothed: float) -> PortfolioState:
    actions = [action(s, step, a) for s, a in smoothed.items()]
    return fold(
        record_decisions(state, step=step, event_time=step, actions=actions, rules=RULES), state
    )


def test_open_portfolio_starts_with_the_rules_cash() -> None:
    event = open_portfolio(
        run_id=RUN,
        portfolio_id="p1",
        symbols=["A", "B"],
        rules=RULES,
        cause_id="started",
        event_time=5,
    )

    assert event == PortfolioOpened(
        event_id=f"{RUN}/-1/opened",
        cause_id="started",
        run_id=RUN,
        event_time=5,
        portfolio_id="p1",
        initial_cash=10_000.0,
        symbols=("A", "B"),
    )


def test_record_decisions_classifies_in_portfolio_order() -> None:
    state = new_portfolio()
    actions = [action("C", 0, -0.4), action("A", 0, 0.1), action("B", 0, 0.09)]

    events = record_decisions(state, step=0, event_time=99, actions=actions, rules=RULES)

    assert [(e.symbol, e.kind) for e in events] == [("A", "buy"), ("B", "hold"), ("C", "sell")]
    first = events[0]
    assert first == DecisionRecorded(
        event_id=f"{RUN}/0/decision/A",
        cause_id=f"{RUN}/0/action/A",
        run_id=RUN,
        event_time=99,
        symbol="A",
        step=0,
        raw=0.1,
        smoothed=0.1,
        kind="buy",
        policy="test",
        policy_version="3",
    )


def test_decided_orders_fill_at_the_next_open() -> None:
    state = decide(new_portfolio(), 0, A=0.1, B=0.0, C=-0.5)

    events = fill_pending(
        state,
        step=1,
        event_time=2_000,
        open_px=np.array([50.0, 20.0, 10.0]),
        last_close=np.array([49.0, 20.0, 10.0]),
        rules=RULES,
    )

    # A buys 0.1 of the cash: 1_000 with the fee at 50 * 1.0005; C has no position to sell.
    # Sells come first in the ledger (then buys), each side in symbol order.
    skip, fill = events
    assert isinstance(fill, OrderFilled) and isinstance(skip, OrderSkipped)
    assert (fill.symbol, fill.side, fill.step) == ("A", "buy", 1)
    assert fill.event_id == f"{RUN}/1/fill/A"
    assert fill.cause_id == f"{RUN}/0/decision/A"
    assert fill.price == pytest.approx(50.025)
    assert fill.notional + fill.fee == pytest.approx(1_000.0)
    assert fill.quantity == pytest.approx(1_000.0 / 1.001 / 50.025)
    assert fill.clipped_by == ()
    assert (skip.symbol, skip.side, skip.reason) == ("C", "sell", "no_position")
    assert skip.event_id == f"{RUN}/1/skip/C"
    after = fold(events, state)
    assert dict(after.pending) == {}
    assert after.cash == pytest.approx(9_000.0)


def test_capped_fill_names_the_gate_that_clipped_it() -> None:
    state = decide(new_portfolio(), 0, A=1.0)

    (fill,) = fill_pending(
        state,
        step=1,
        event_time=0,
        open_px=np.array([10.0, 10.0, 10.0]),
        last_close=np.full(3, 10.0),
        rules=RULES,
    )

    assert isinstance(fill, OrderFilled)
    assert fill.clipped_by == ("position_cap",)
    assert fill.quantity == pytest.approx(0.15 * 10_000.0 / 10.0)
    assert fill.requested_quantity == pytest.approx(10_000.0 / 1.001 / 10.005)


def test_sell_fill_has_positive_quantity_and_sell_side() -> None:
    state = decide(new_portfolio(), 0, A=0.1)
    state = fold(
        fill_pending(
            state,
            step=1,
            event_time=0,
            open_px=np.full(3, 10.0),
            last_close=np.full(3, 10.0),
            rules=RULES,
        ),
        state,
    )
    held = state.quantity("A")
    state = decide(state, 1, A=-0.5)

    (fill,) = fill_pending(
        state,
        step=2,
        event_time=0,
        open_px=np.full(3, 12.0),
        last_close=np.full(3, 10.0),
        rules=RULES,
    )

    assert isinstance(fill, OrderFilled)
    assert fill.side == "sell"
    assert fill.quantity == pytest.approx(0.5 * held)
    assert fill.price == pytest.approx(12.0 * 0.9995)


def test_pending_order_of_symbol_without_bar_is_skipped_no_bar() -> None:
    state = decide(new_portfolio(), 0, B=0.5)

    (skip,) = fill_pending(
        state,
        step=1,
        event_time=0,
        open_px=np.array([10.0, NAN, 10.0]),
        last_close=np.array([10.0, 10.0, 10.0]),
        rules=RULES,
    )

    assert isinstance(skip, OrderSkipped)
    assert (skip.symbol, skip.reason, skip.side) == ("B", "no_bar", "buy")


def test_fill_pending_without_pending_orders_emits_nothing() -> None:
    state = decide(new_portfolio(), 0, A=0.0, B=0.05)

    assert (
        fill_pending(
            state,
            step=1,
            event_time=0,
            open_px=np.full(3, 1.0),
            last_close=np.full(3, 1.0),
            rules=RULES,
        )
        == []
    )


def test_mark_values_positions_at_latest_close() -> None:
    state = new_portfolio()
    state = fold(
        [
            OrderFilled(
                event_id="f",
                cause_id="d",
                run_id=RUN,
                event_time=0,
                symbol="B",
                step=1,
                side="buy",
                quantity=10.0,
                price=100.0,
                notional=1_000.0,
                fee=1.0,
                requested_quantity=10.0,
                clipped_by=(),
            )
        ],
        state,
    )

    snapshot = mark(
        state, step=1, event_time=7, last_close=np.array([NAN, 110.0, 5.0]), bars=2, cause_id="bars"
    )

    assert isinstance(snapshot, AccountMarked)
    # Cash 10_000 - 1_001 = 8_999; B: 10 * 110 = 1_100; unrealised 1_100 - 1_001 = 99.
    assert snapshot.cash == pytest.approx(8_999.0)
    assert snapshot.equity == pytest.approx(8_999.0 + 1_100.0)
    (holding,) = snapshot.holdings
    assert (holding.symbol, holding.quantity, holding.close) == ("B", 10.0, 110.0)
    assert holding.avg_cost == pytest.approx(100.1)
    assert holding.unrealized_pnl == pytest.approx(99.0)
    assert (snapshot.step, snapshot.bars, snapshot.event_id) == (1, 2, f"{RUN}/1/marked")


def test_close_run_expires_pending_orders_at_end_of_data() -> None:
    state = decide(new_portfolio(), 4, C=-0.5, A=0.5, B=0.0)

    events = close_run(state, step=4, event_time=50, cause_id="end")

    *skips, closed = events
    assert [(s.symbol, s.side, s.reason, s.step) for s in skips if isinstance(s, OrderSkipped)] == [
        ("A", "buy", "end_of_data", 5),
        ("C", "sell", "end_of_data", 5),
    ]
    assert [s.cause_id for s in skips] == [f"{RUN}/4/decision/A", f"{RUN}/4/decision/C"]
    assert closed == PortfolioClosed(
        event_id=f"{RUN}/4/closed",
        cause_id="end",
        run_id=RUN,
        event_time=50,
        steps=5,
        final_equity=10_000.0,
    )
    final = fold(events, state)
    assert final.closed and dict(final.pending) == {}


def test_close_run_without_pending_orders_only_closes() -> None:
    (closed,) = close_run(new_portfolio(), step=0, event_time=0, cause_id="end")

    assert isinstance(closed, PortfolioClosed)


def test_a_whole_run_folds_to_the_marked_equity() -> None:
    state = new_portfolio(("A",))
    closes = [10.0, 11.0, 12.0]
    opens = [10.0, 10.5, 11.5]
    log = []
    for step, (o, c) in enumerate(zip(opens, closes, strict=True)):
        events = fill_pending(
            state,
            step=step,
            event_time=step,
            open_px=np.array([o]),
            last_close=np.array([c]),
            rules=RULES,
        )
        state = fold(events, state)
        snapshot = mark(
            state, step=step, event_time=step, last_close=np.array([c]), bars=1, cause_id="bars"
        )
        state = fold([snapshot], state)
        log += [*events, snapshot]
        decisions = record_decisions(
            state, step=step, event_time=step, actions=[action("A", step, 0.1)], rules=RULES
        )
        state = fold(decisions, state)
        log += decisions
    log += close_run(state, step=2, event_time=2, cause_id="end")

    final = fold(log, new_portfolio(("A",)))

    assert final.closed
    assert final.fills == 2  # decided at 0 and 1; the decision at 2 expired
    position = final.positions["A"]
    assert final.equity == pytest.approx(final.cash + position.quantity * 12.0)
