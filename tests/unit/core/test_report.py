"""A run's summary as a fold of a tiny hand-built event log."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest

from core.events import (
    AccountMarked,
    DecisionRecorded,
    Event,
    Holding,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
)
from core.report import ActionMix, summarize

RUN = "run-r"


def common(name: str, step: int) -> dict[str, Any]:
    return {"event_id": f"{RUN}/{step}/{name}", "cause_id": "c", "run_id": RUN, "event_time": step}


def decision(symbol: str, step: int, smoothed: float, kind: str) -> DecisionRecorded:
    return DecisionRecorded(
        **common(f"decision/{symbol}", step),
        symbol=symbol,
        step=step,
        raw=smoothed,
        smoothed=smoothed,
        kind=kind,
        policy="p",
        policy_version="1",
    )


def fill(
    symbol: str,
    step: int,
    side: str,
    quantity: float,
    price: float,
    clipped_by: tuple[str, ...] = (),
) -> OrderFilled:
    notional = quantity * price
    return OrderFilled(
        **common(f"fill/{symbol}", step),
        symbol=symbol,
        step=step,
        side=side,
        quantity=quantity,
        price=price,
        notional=notional,
        fee=notional * 0.001,
        requested_quantity=quantity,
        clipped_by=clipped_by,
    )


def skip(symbol: str, step: int, side: str, reason: str) -> OrderSkipped:
    return OrderSkipped(
        **common(f"skip/{symbol}", step),
        symbol=symbol,
        step=step,
        side=side,
        reason=reason,
        requested_quantity=0.0,
    )


def marked(step: int, cash: float, holdings: tuple[Holding, ...] = ()) -> AccountMarked:
    equity = cash + sum(h.quantity * h.close for h in holdings)
    return AccountMarked(
        **common("marked", step),
        step=step,
        bars=2,
        cash=cash,
        equity=equity,
        holdings=holdings,
    )


def holding(quantity: float, cost: float, close: float) -> Holding:
    return Holding(
        symbol="A",
        quantity=quantity,
        cost=cost,
        avg_cost=cost / quantity,
        close=close,
        unrealized_pnl=quantity * close - cost,
    )


def run_log() -> list[Event]:
    return [
        PortfolioOpened(
            **common("opened", -1), portfolio_id="p", initial_cash=10_000.0, symbols=("A", "B")
        ),
        marked(0, 10_000.0),
        decision("A", 0, 0.5, "buy"),
        decision("B", 0, 0.0, "hold"),
        fill("A", 1, "buy", 10.0, 100.0, ("position_cap",)),  # pays 1_000 + 1
        marked(1, 8_999.0, (holding(10.0, 1_001.0, 105.0),)),  # 8_999 + 1_050 = 10_049
        decision("A", 1, -0.5, "sell"),
        decision("B", 1, -0.3, "sell"),
        fill("A", 2, "sell", 5.0, 110.0),  # gets 550 - 0.55
        skip("B", 2, "sell", "no_position"),
        marked(2, 9_548.45, (holding(5.0, 500.5, 100.0),)),  # 9_548.45 + 500 = 10_048.45
        decision("A", 2, 0.2, "buy"),
        decision("B", 2, 0.05, "hold"),
        skip("A", 3, "buy", "end_of_data"),
        PortfolioClosed(**common("closed", 2), steps=3, final_equity=10_048.45),
    ]


def test_summary_of_a_hand_built_run() -> None:
    summary = summarize(run_log())

    assert summary.run_id == RUN
    assert (summary.symbols, summary.steps, summary.bars, summary.actions) == (2, 3, 6, 6)
    assert (summary.trades, summary.buys, summary.sells) == (2, 1, 1)
    assert summary.skipped == {"end_of_data": 1, "no_position": 1}
    assert summary.clipped == {"position_cap": 1}
    assert summary.fees == pytest.approx(1.0 + 0.55)
    assert summary.initial_equity == 10_000.0
    assert summary.final_equity == pytest.approx(10_048.45)
    assert summary.total_return == pytest.approx(48.45 / 10_000.0)
    # The only fall: from the 10_049 peak to 10_048.45.
    assert summary.max_drawdown == pytest.approx(0.55 / 10_049.0)
    # The sell made 549.45 - 5 * 100.1 = 48.95 > 0.
    assert (summary.closed_trades, summary.win_rate) == (1, 1.0)
    assert summary.complete


def test_summary_sharpe_is_over_the_marked_equity_curve() -> None:
    summary = summarize(run_log(), periods_per_year=252)

    # Curve: 10_000 (opened), 10_000, 10_049, 10_048.45.
    returns = [0.0, 49.0 / 10_000.0, -0.55 / 10_049.0]
    expected = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(252)
    assert summary.sharpe == pytest.approx(expected)
    assert summary.sharpe == pytest.approx(9.012, abs=1e-3)


def test_summary_counts_the_action_mix_per_symbol() -> None:
    summary = summarize(run_log())

    assert summary.action_mix == {
        "A": ActionMix(buy=2, sell=1, hold=0),
        "B": ActionMix(buy=0, sell=1, hold=2),
    }
    assert summary.action_mix["B"].shares() == pytest.approx((0.0, 1 / 3, 2 / 3))


def test_summary_of_unfinished_run_is_incomplete() -> None:
    summary = summarize(run_log()[:6])

    assert not summary.complete
    assert summary.steps == 2
    assert summary.final_equity == pytest.approx(10_049.0)
    assert summary.closed_trades == 0 and summary.win_rate == 0.0


def test_empty_action_mix_has_zero_shares() -> None:
    assert ActionMix().shares() == (0.0, 0.0, 0.0)
