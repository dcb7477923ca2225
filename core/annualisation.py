"""Periods per year from the bars' own times: what an annualised Sharpe is multiplied by.

A Sharpe ratio of per-bar returns is annualised with ``sqrt(periods per
year)``, and that number depends on the bars: 252 for daily equities, about
252 x 7 for hourly regular-session equities, 105,120 for 5-minute bars around
the clock. ``annualisation(timestamps)`` derives it from the timestamps alone
(UTC nanoseconds, in any order),
so a summary folded from the event log and the loader that read the file get
the same answer. The rule (docs/data.md, "Annualisation"):

1. **Bar interval**: the most common gap between consecutive timestamps.
2. **Calendar**: *weekdays* when the data has a break of 40 hours or more in
   at least half of its weeks (weekends; a span shorter than a week counts as
   weekdays unless it trades around the clock), else *seven days*. A weekday
   calendar has 252 sessions a year (the exchange convention), a seven-day one
   365.
3. **Daily or coarser** bars (interval of 20 hours or more): one bar per
   session; weekly bars 52 a year, monthly 12, quarterly 4.
4. **Intraday** bars: sessions are the runs of bars split by gaps longer than
   three intervals and three hours. Bars per session are the median, over
   sessions, of (last - first) / interval + 1, so a few missing bars inside a
   session do not change it. Data whose only breaks are weekends (forex) or
   that has none (crypto) trades around the clock: ``24 h / interval`` bars a
   session. Less than 20 hours of bars without a break is one exchange session.

Periods per year = bars per session x sessions per year; an explicit
override replaces the derivation and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SECOND = 1_000_000_000
HOUR = 3_600 * SECOND
DAY = 24 * HOUR
WEEKDAY_SESSIONS = 252
"""Trading sessions a year on a weekday exchange calendar."""
SEVEN_DAY_SESSIONS = 365
"""Days a year of a market that trades every day."""
WEEKEND_GAP = 40 * HOUR
"""A break at least this long is a weekend (or a holiday next to one)."""
DEFAULT_PERIODS = 252
"""Used when the bars are too few to tell (fewer than three timestamps)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Annualisation:
    """How many periods a year a run's per-bar statistics are annualised with, and why."""

    periods_per_year: int
    bar_seconds: int
    """The bar interval (0 when unknown)."""
    bars_per_session: int
    sessions_per_year: int
    calendar: str
    """``weekdays``, ``seven days``, or ``weekly`` / ``monthly`` / ``quarterly`` for coarse bars."""
    derived: bool = True
    """False when the number was given (an override), not derived from the bars."""

    def describe(self) -> str:
        """One line for a summary: the number and where it comes from."""
        if not self.derived:
            return f"{self.periods_per_year:,} periods/yr (set by --periods-per-year)"
        bar = interval_label(self.bar_seconds)
        if self.bars_per_session > 1:
            return (
                f"{self.periods_per_year:,} periods/yr: {bar} bars, {self.bars_per_session} a "
                f"session x {self.sessions_per_year} sessions ({self.calendar})"
            )
        return f"{self.periods_per_year:,} periods/yr: {bar} bars ({self.calendar})"


def interval_label(seconds: int) -> str:
    """``5min``, ``1h``, ``1d``, ``7d``... for a bar interval in seconds."""
    if seconds <= 0:
        return "unknown"
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def fixed(periods_per_year: int) -> Annualisation:
    """An override: ``periods_per_year`` as given."""
    if periods_per_year < 1:
        raise ValueError(f"periods per year must be >= 1, got {periods_per_year}")
    return Annualisation(
        periods_per_year=periods_per_year,
        bar_seconds=0,
        bars_per_session=0,
        sessions_per_year=0,
        calendar="given",
        derived=False,
    )


def annualisation(
    timestamps: Sequence[int] | npt.NDArray[np.int64], override: int | None = None
) -> Annualisation:
    """The periods per year of bars at ``timestamps`` (UTC ns), or ``override`` when given."""
    if override is not None:
        return fixed(override)
    ts = np.unique(np.asarray(timestamps, dtype=np.int64))
    gaps = np.diff(ts)
    step = _mode(gaps) if gaps.size else 0
    if ts.size < 3 or step <= 0:
        return Annualisation(
            periods_per_year=DEFAULT_PERIODS,
            bar_seconds=step // SECOND,
            bars_per_session=1,
            sessions_per_year=DEFAULT_PERIODS,
            calendar="too few bars (or bars under a second apart) to tell: the daily default",
        )
    weeks = int((ts[-1] - ts[0]) // (7 * DAY))
    weekend_breaks = int(np.count_nonzero(gaps >= WEEKEND_GAP))
    if step >= 20 * HOUR:
        return _coarse(step, weekend_breaks, weeks)
    breaks = gaps > max(3 * step, 3 * HOUR)
    starts = np.concatenate(([0], np.flatnonzero(breaks) + 1))
    stops = np.concatenate((np.flatnonzero(breaks), [ts.size - 1]))
    session_breaks = int(np.count_nonzero(breaks))
    one_session = session_breaks == 0 and ts[-1] - ts[0] < 20 * HOUR
    if weeks >= 1:
        weekdays = weekend_breaks >= max(1, weeks // 2)
    else:  # under a week: a market with overnight breaks (or one short session) is an exchange's
        weekdays = session_breaks > 0 or one_session
    sessions = WEEKDAY_SESSIONS if weekdays else SEVEN_DAY_SESSIONS
    calendar = "weekdays" if weekdays else "seven days"
    lengths = (ts[stops] - ts[starts]) // step + 1
    daily_sessions = (
        session_breaks > weekend_breaks or (session_breaks > 0 and weeks == 0) or one_session
    )
    if daily_sessions and np.median(ts[stops] - ts[starts]) < 20 * HOUR:
        per_session = int(np.median(lengths))
    else:  # around the clock (with or without weekends)
        per_session = max(1, int(round(DAY / step)))
        calendar += ", around the clock"
    return Annualisation(
        periods_per_year=per_session * sessions,
        bar_seconds=int(step // SECOND),
        bars_per_session=per_session,
        sessions_per_year=sessions,
        calendar=calendar,
    )


def _coarse(step: int, weekend_breaks: int, weeks: int) -> Annualisation:
    days = step / DAY
    for low, high, periods, name in (
        (4.0, 10.0, 52, "weekly"),
        (25.0, 35.0, 12, "monthly"),
        (80.0, 100.0, 4, "quarterly"),
    ):
        if low <= days < high:
            return Annualisation(
                periods_per_year=periods,
                bar_seconds=int(step // SECOND),
                bars_per_session=1,
                sessions_per_year=periods,
                calendar=name,
            )
    if days >= 4.0:
        periods = max(1, int(round(365.25 / days)))
        return Annualisation(
            periods_per_year=periods,
            bar_seconds=int(step // SECOND),
            bars_per_session=1,
            sessions_per_year=periods,
            calendar=f"every {days:g} days",
        )
    weekdays = weekend_breaks >= max(1, weeks // 2) or weeks == 0
    sessions = WEEKDAY_SESSIONS if weekdays else SEVEN_DAY_SESSIONS
    return Annualisation(
        periods_per_year=sessions,
        bar_seconds=int(step // SECOND),
        bars_per_session=1,
        sessions_per_year=sessions,
        calendar="weekdays" if weekdays else "seven days",
    )


def _mode(gaps: npt.NDArray[np.int64]) -> int:
    """The most common gap, to the second (the smallest of equally common ones)."""
    seconds = gaps // SECOND
    values, counts = np.unique(seconds, return_counts=True)
    return int(values[int(np.argmax(counts))]) * SECOND
