"""Periods per year from the bar interval, the calendar and the sessions."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from core.annualisation import annualisation, fixed, interval_label
from core.events import AccountMarked, Event, PortfolioOpened
from core.gates import gate_table
from core.performance import sharpe_ratio, step_returns
from core.report import summarize

NEW_YORK = ZoneInfo("America/New_York")


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def weekday_sessions(
    days: int, open_: tuple[int, int], close: tuple[int, int], minutes: int
) -> list[int]:
    """Bars every ``minutes`` from ``open_`` to before ``close`` (New York), Mondays to Fridays."""
    out = []
    day = datetime(2021, 3, 1, tzinfo=NEW_YORK)  # a Monday
    for _ in range(days):
        if day.weekday() < 5:
            t = day.replace(hour=open_[0], minute=open_[1])
            end = day.replace(hour=close[0], minute=close[1])
            while t < end:
                out.append(ns(t))
                t += timedelta(minutes=minutes)
        day += timedelta(days=1)
    return out


def around_the_clock(bars: int, minutes: int, weekends: bool = True) -> list[int]:
    start = datetime(2021, 3, 1, tzinfo=UTC)
    moments = (start + timedelta(minutes=minutes * i) for i in range(bars))
    return [ns(m) for m in moments if weekends or m.weekday() < 5]


def test_daily_weekday_bars_are_252_a_year() -> None:
    days = weekday_sessions(120, (0, 0), (0, 1), 1440)
    yearly = annualisation(days)
    assert (yearly.periods_per_year, yearly.bar_seconds, yearly.calendar) == (
        252,
        86_400,
        "weekdays",
    )
    assert yearly.describe() == "252 periods/yr: 1d bars (weekdays)"


def test_daily_bars_every_day_are_365_a_year() -> None:
    assert annualisation(around_the_clock(90, 1440)).periods_per_year == 365


def test_hourly_regular_session_equities_are_252_times_7() -> None:
    # Seven hourly bars a session (09:30 .. 15:30), weekdays.
    yearly = annualisation(weekday_sessions(60, (9, 30), (16, 0), 60))
    assert (yearly.bars_per_session, yearly.periods_per_year) == (7, 252 * 7)


def test_five_minute_bars_around_the_clock_are_105120() -> None:
    yearly = annualisation(around_the_clock(288 * 30, 5))
    assert yearly.periods_per_year == 105_120 == 288 * 365
    assert "around the clock" in yearly.describe()


def test_hourly_forex_with_weekends_off_trades_24_bars_on_252_days() -> None:
    yearly = annualisation(around_the_clock(24 * 7 * 8, 60, weekends=False))
    assert yearly.periods_per_year == 24 * 252


def test_one_minute_regular_session_is_390_a_session_despite_missing_minutes() -> None:
    times = weekday_sessions(21, (9, 30), (16, 0), 1)
    rng = np.random.default_rng(0)
    keep = [t for i, t in enumerate(times) if i % 390 in (0, 389) or rng.random() > 0.2]
    assert len(keep) < len(times) * 0.85  # a fifth of the minutes have no trade
    assert annualisation(keep).periods_per_year == 390 * 252


def test_weekly_and_monthly_bars() -> None:
    start = datetime(2020, 1, 6, tzinfo=UTC)
    weekly = [ns(start + timedelta(weeks=i)) for i in range(60)]
    monthly = [ns(datetime(2015 + i // 12, 1 + i % 12, 1, tzinfo=UTC)) for i in range(40)]
    assert annualisation(weekly).periods_per_year == 52
    assert annualisation(monthly).periods_per_year == 12


def test_an_override_replaces_the_derivation_and_says_so() -> None:
    yearly = annualisation(around_the_clock(1000, 5), override=1000)
    assert yearly.periods_per_year == 1000 and not yearly.derived
    assert yearly.describe() == "1,000 periods/yr (set by --periods-per-year)"
    with pytest.raises(ValueError, match="periods per year must be >= 1"):
        fixed(0)


def test_too_few_bars_fall_back_to_the_daily_default_and_say_so() -> None:
    yearly = annualisation([0, 86_400 * 10**9])
    assert yearly.periods_per_year == 252
    assert "too few bars" in yearly.describe()


def test_interval_labels() -> None:
    assert [interval_label(s) for s in (60, 300, 3600, 86_400, 90)] == [
        "1min",
        "5min",
        "1h",
        "1d",
        "90s",
    ]


@pytest.mark.parametrize(
    ("name", "periods"),
    [
        ("us_equities_1d.csv.gz", 252),
        ("us_equities_1h.csv.gz", 252 * 7),
        ("us_equities_1min_2013-10.csv", 252 * 960),  # 04:00 to 20:00, pre- and after-hours
    ],
)
def test_the_shared_us_equity_files(
    name: str, periods: int, shared_data: Callable[[str], Path]
) -> None:
    from rl_agents.data import load_bars

    path = shared_data(name)
    frame = load_bars(str(path))
    assert annualisation(frame.timestamps).periods_per_year == periods


def run_log(times: list[int], equity: list[float]) -> list[Event]:
    run = "r"
    events: list[Event] = [
        PortfolioOpened(
            event_id="r/open",
            cause_id="r",
            run_id=run,
            event_time=times[0],
            portfolio_id="main",
            initial_cash=equity[0],
            symbols=("X",),
        )
    ]
    for step, (t, e) in enumerate(zip(times, equity[1:], strict=True)):
        events.append(
            AccountMarked(
                event_id=f"r/{step}/marked",
                cause_id="c",
                run_id=run,
                event_time=t,
                step=step,
                cash=e,
                equity=e,
                holdings=(),
                bars=1,
            )
        )
    return events


def test_summary_and_gate_table_annualise_from_the_marks_bar_times() -> None:
    times = around_the_clock(600, 5)
    rng = np.random.default_rng(1)
    equity = list(100_000.0 * np.cumprod(1.0 + rng.normal(0.0, 0.001, 601)))
    events = run_log(times, equity)

    summary = summarize(events)
    table = gate_table(events)

    assert summary.annualisation.periods_per_year == 105_120
    assert summary.sharpe == pytest.approx(sharpe_ratio(step_returns(equity), 105_120))
    # The 252-day figure would be off by sqrt(105120 / 252), about 20x.
    wrong = sharpe_ratio(step_returns(equity), 252)
    assert abs(summary.sharpe / wrong) == pytest.approx(math.sqrt(105_120 / 252))
    assert table.fleet.sharpe == summary.sharpe
    assert table.summary.annualisation == summary.annualisation
    assert summarize(events, periods_per_year=252).sharpe == pytest.approx(wrong)
