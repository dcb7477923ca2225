"""The portfolio ledger: evolve and fold over hand-built events."""

from __future__ import annotations

import pytest

from core.events import (
    AccountMarked,
    BarClosed,
    DecisionRecorded,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
)
from core.ledger import LedgerError, PendingOrder, PortfolioState, Position, evolve, fold

RUN = "run-1"


def opened(cash: float = 10_000.0, symbols: tuple[str, ...] = ("A", "B")) -> PortfolioOpened:
    return PortfolioOpened(
        event_id=f"{RUN}/-1/opened",
        cause_id="start",
        run_id=RUN,
        event_time=0,
        portfolio_id="p1",
        initial_cash=cash,
        symbols=symbols,
    )


def decided(symbol: str, step: int, smoothed: float, kind: str) -> DecisionRecorded:
    return DecisionRecorded(
        event_id=f"{RUN}/{step}/decision/{symbol}",
        cause_id=f"action/{symbol}",
        run_id=RUN,
        event_time=step,
        symbol=symbol,
        step=step,
        raw=smoothed,
        smoothed=smoothed,
        kind=kind,
        policy="test",
        policy_version="1",
    )


def filled(
    symbol: str,
    side: str,
    quantity: float,
    price: float,
    *,
    fee_rate: float = 0.001,
    step: int = 1,
) -> OrderFilled:
    notional = quantity * price
    return OrderFilled(
        event_id=f"{RUN}/{step}/fill/{symbol}/{side}/{quantity}",
        cause_id="decision",
        run_id=RUN,
        event_time=step,
        symbol=symbol,
        step=step,
        side=side,
        quantity=quantity,
        price=price,
        notional=notional,
        fee=notional * fee_rate,
        requested_quantity=quantity,
        clipped_by=(),
    )


def skipped(symbol: str, step: int = 1) -> OrderSkipped:
    return OrderSkipped(
        event_id=f"{RUN}/{step}/skip/{symbol}",
        cause_id="decision",
        run_id=RUN,
        event_time=step,
        symbol=symbol,
        step=step,
        side="sell",
        reason="no_position",
        requested_quantity=0.0,
    )


def marked(step: int, equity: float, bars: int = 2) -> AccountMarked:
    return AccountMarked(
        event_id=f"{RUN}/{step}/marked",
        cause_id="bars",
        run_id=RUN,
        event_time=step,
        step=step,
        bars=bars,
        cash=equity,
        equity=equity,
        holdings=(),
    )


def test_opened_portfolio_holds_its_initial_cash() -> None:
    state = fold([opened(10_000.0)])

    assert state.opened and not state.closed
    assert (state.cash, state.equity, state.initial_cash) == (10_000.0, 10_000.0, 10_000.0)
    assert state.symbols == ("A", "B")
    assert state.run_id == RUN and state.portfolio_id == "p1"
    assert dict(state.positions) == {}


def test_fold_of_fills_gives_cash_and_positions() -> None:
    state = fold(
        [
            opened(10_000.0),
            filled("A", "buy", 10.0, 100.0),  # pays 1_000 + 1 fee
            filled("B", "buy", 5.0, 200.0),  # pays 1_000 + 1 fee
            filled("A", "sell", 4.0, 110.0),  # gets 440 - 0.44 fee
        ]
    )

    # Cash: 10_000 - 1_001 - 1_001 + 439.56 = 8_437.56.
    assert state.cash == pytest.approx(8_437.56)
    # A: 6 shares; cost 1_001 less the 4 sold at the average 100.1 = 1_001 - 400.4 = 600.6.
    assert state.positions["A"].quantity == pytest.approx(6.0)
    assert state.positions["A"].cost == pytest.approx(600.6)
    assert state.positions["B"] == Position(5.0, 1_001.0)
    assert state.quantity("B") == 5.0 and state.quantity("C") == 0.0
    assert state.fees == pytest.approx(1.0 + 1.0 + 0.44)
    assert state.fills == 3


def test_buy_cost_basis_includes_the_fee() -> None:
    state = fold([opened(), filled("A", "buy", 10.0, 100.0)])

    assert state.positions["A"].avg_cost == pytest.approx(100.1)  # (1_000 + 1) / 10


def test_sell_realises_pnl_against_average_cost_including_fees() -> None:
    state = fold(
        [
            opened(10_000.0),
            filled("A", "buy", 10.0, 100.0),  # cost 1_000 + 1
            filled("A", "buy", 10.0, 120.0),  # cost 1_200 + 1.2
            filled("A", "sell", 5.0, 130.0),  # 650 - 0.65
        ]
    )

    # Average cost (1_001 + 1_201.2) / 20 = 110.11; P&L 649.35 - 5 * 110.11 = 98.8.
    assert state.realized_pnl == pytest.approx(98.8)
    assert state.positions["A"].quantity == pytest.approx(15.0)
    assert state.positions["A"].cost == pytest.approx(2_202.2 - 550.55)
    assert state.positions["A"].avg_cost == pytest.approx(110.11)
    assert (state.closed_trades, state.winning_trades) == (1, 1)


def test_sell_that_only_covers_fees_is_a_losing_trade() -> None:
    # Bought at 100 (avg cost 100.1), sold at 100.1 less a 0.1001 fee: P&L = -0.1001.
    state = fold([opened(), filled("A", "buy", 1.0, 100.0), filled("A", "sell", 1.0, 100.1)])

    assert state.realized_pnl == pytest.approx(100.1 - 0.1001 - 100.1)
    assert (state.closed_trades, state.winning_trades) == (1, 0)


def test_selling_the_whole_position_removes_it() -> None:
    state = fold([opened(), filled("A", "buy", 10.0, 100.0), filled("A", "sell", 10.0, 90.0)])

    assert "A" not in state.positions
    assert state.quantity("A") == 0.0
    # 10_000 - 1_001 + 900 - 0.9
    assert state.cash == pytest.approx(9_898.1)
    assert state.realized_pnl == pytest.approx(900 - 0.9 - 1_001)


def test_selling_more_than_held_is_rejected() -> None:
    state = fold([opened(), filled("A", "buy", 10.0, 100.0)])

    with pytest.raises(LedgerError, match="holds 10.0"):
        evolve(state, filled("A", "sell", 11.0, 100.0))


def test_fill_with_unknown_side_is_rejected() -> None:
    with pytest.raises(LedgerError, match="neither buy nor sell"):
        fold([opened(), filled("A", "short", 1.0, 100.0)])


def test_buy_or_sell_decision_becomes_pending_and_hold_does_not() -> None:
    state = fold(
        [
            opened(),
            decided("A", 0, 0.5, "buy"),
            decided("B", 0, 0.05, "hold"),
        ]
    )

    assert dict(state.pending) == {"A": PendingOrder(0.5, f"{RUN}/0/decision/A", 0)}
    assert state.decided_step == 0


def test_fill_and_skip_clear_their_pending_orders() -> None:
    state = fold(
        [
            opened(),
            decided("A", 0, 0.5, "buy"),
            decided("B", 0, -0.5, "sell"),
            filled("A", "buy", 1.0, 100.0),
            skipped("B"),
        ]
    )

    assert dict(state.pending) == {}


def test_account_marked_sets_equity_and_marked_step() -> None:
    state = fold([opened(), marked(0, 10_000.0), marked(1, 10_250.0, bars=1)])

    assert (state.marked_step, state.marked_bars, state.equity) == (1, 1, 10_250.0)


def test_portfolio_closed_sets_final_equity() -> None:
    closed = PortfolioClosed(
        event_id=f"{RUN}/3/closed",
        cause_id="end",
        run_id=RUN,
        event_time=3,
        steps=4,
        final_equity=9_900.0,
    )

    state = fold([opened(), closed])

    assert state.closed and state.equity == 9_900.0


def test_event_before_opening_is_rejected() -> None:
    with pytest.raises(LedgerError, match="before the portfolio was opened"):
        fold([marked(0, 1.0)])


def test_opening_twice_is_rejected() -> None:
    with pytest.raises(LedgerError, match="already opened"):
        fold([opened(), opened()])


def test_non_portfolio_event_is_rejected() -> None:
    bar = BarClosed(
        event_id="bar",
        cause_id="replay",
        run_id=RUN,
        event_time=0,
        symbol="A",
        step=0,
        steps_total=1,
        step_bars=1,
        open=1.0,
        high=1.0,
        low=1.0,
        close=1.0,
        volume=1.0,
    )

    with pytest.raises(LedgerError, match="not a portfolio event"):
        fold([opened(), bar])


def test_fold_continues_from_a_given_state_without_changing_it() -> None:
    start = fold([opened(), filled("A", "buy", 10.0, 100.0)])

    later = fold([filled("A", "buy", 10.0, 100.0)], start)

    assert later.quantity("A") == 20.0
    assert start.quantity("A") == 10.0


def test_empty_state_has_no_positions() -> None:
    state = PortfolioState()

    assert not state.opened
    assert state.quantity("A") == 0.0
    assert Position(0.0, 0.0).avg_cost == 0.0


def test_decision_for_a_symbol_outside_the_portfolio_is_rejected() -> None:
    state = fold([opened()])

    with pytest.raises(LedgerError, match="ZZZ is not in the portfolio"):
        evolve(state, decided("ZZZ", 0, 0.5, "buy"))
