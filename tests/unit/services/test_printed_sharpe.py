"""Every printed or exported Sharpe states its annualisation: demo summary, metrics."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
from prometheus_client import CollectorRegistry

from core.annualisation import annualisation
from core.events import AccountMarked, Event, PortfolioOpened
from core.gates import gate_table
from core.ledger import PortfolioState
from core.performance import sharpe_ratio, step_returns
from core.report import buy_and_hold
from services.demo import format_summary
from services.portfolio_manager.metrics import ROLLING_RETURNS, PortfolioMetrics


def five_minute_marks(n: int) -> list[int]:
    start = datetime(2021, 3, 1, tzinfo=UTC)
    return [int((start + timedelta(minutes=5 * i)).timestamp()) * 10**9 for i in range(n)]


def run_log(times: list[int], equity: list[float], symbols: tuple[str, ...]) -> list[Event]:
    events: list[Event] = [
        PortfolioOpened(
            event_id="r/open", cause_id="r", run_id="r", event_time=times[0],
            portfolio_id="main", initial_cash=equity[0], symbols=symbols,
        )
    ]  # fmt: skip
    for step, (t, e) in enumerate(zip(times, equity[1:], strict=True)):
        events.append(
            AccountMarked(
                event_id=f"r/{step}/marked", cause_id="c", run_id="r", event_time=t,
                step=step, cash=e, equity=e, holdings=(), bars=len(symbols),
            )
        )  # fmt: skip
    return events


def test_rolling_sharpe_metric_is_annualised_from_the_marks_bar_interval() -> None:
    registry = CollectorRegistry()
    metrics = PortfolioMetrics(registry, periods_per_year=None)
    times = five_minute_marks(300)
    rng = np.random.default_rng(3)
    equity = list(100_000.0 * np.cumprod(1.0 + rng.normal(0.0, 0.001, 301)))
    events = run_log(times, equity, ("X",))
    for event in events[1:]:
        metrics.observe([event], PortfolioState())

    periods = registry.get_sample_value("tradingbot_portfolio_periods_per_year")
    sharpe = registry.get_sample_value("tradingbot_portfolio_rolling_sharpe_ratio")
    assert periods == 105_120 == annualisation(times).periods_per_year
    last = np.array(equity[1:][-(ROLLING_RETURNS + 1) :])
    assert sharpe == sharpe_ratio(last[1:] / last[:-1] - 1.0, 105_120)


def test_a_given_periods_per_year_is_kept_by_the_metric() -> None:
    registry = CollectorRegistry()
    metrics = PortfolioMetrics(registry, periods_per_year=252)
    for event in run_log(five_minute_marks(40), [1e5 + i for i in range(41)], ("X",))[1:]:
        metrics.observe([event], PortfolioState())
    assert registry.get_sample_value("tradingbot_portfolio_periods_per_year") == 252


def test_demo_summary_states_the_annualisation_beside_buy_and_hold() -> None:
    times = five_minute_marks(600)
    rng = np.random.default_rng(4)
    equity = list(100_000.0 * np.cumprod(1.0 + rng.normal(0.0, 0.001, 601)))
    symbols = tuple(f"S{i:02d}" for i in range(14))
    table = gate_table(run_log(times, equity, symbols))
    close = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.002, (600, 14)), axis=0)
    close[50:60, 3] = np.nan  # a gap: the last close is carried
    bench = buy_and_hold(close, 100_000.0, table.summary.annualisation)

    text = format_summary(table.summary, benchmark=bench, table=table)

    assert "Sharpe annualised with 105,120 periods/yr: 5min bars" in text
    sharpe_row = next(line for line in text.splitlines() if line.strip().startswith("Sharpe "))
    assert sharpe_row.split()[1:] == [f"{table.summary.sharpe:.2f}", f"{bench.sharpe:.2f}"]
    assert bench.sharpe == sharpe_ratio(step_returns(bench.equity), 105_120)
    held = np.nan_to_num(close, nan=0.0)
    held[50:60, 3] = close[49, 3]
    expected = 100_000.0 / 14 * (held[-1] / held[0]).sum()
    assert bench.equity[-1] == expected or abs(bench.equity[-1] - expected) < 1e-6
    # 14 agents: the 5 best and the 5 worst, not all of them.
    assert "best and worst 5 of 14" in text
    assert len(re.findall(r"^  S\d\d ", text, flags=re.MULTILINE)) == 10
