"""Bars in the layouts users have: header aliases, date formats, time zones, sessions, Adj Close.

``read_table(header, rows, source, options)`` turns the cells of any table of
bars (a CSV file's rows, a Parquet file's columns) into a validated
``BarFrame`` through ``core.bars.rows_to_frame``, so every layout is checked by
the same rules and every refusal names the file, the row and the problem.
Reading files is the caller's business (``rl_agents.data``); this module does
no I/O.

What it recognises (docs/data.md, "Bring your own bars"):

- **Columns** by name, case and spaces ignored: the time (``timestamp``,
  ``datetime``, ``date``, ``time``, ``gmt time``, ``local time``, ``open
  time``, ``date`` + ``time`` in two columns), ``symbol`` / ``ticker``,
  ``open``, ``high``, ``low``, ``close``, ``adj close``, ``volume``. A column
  map (``LoadOptions.columns``) names the others.
- **One symbol per file** when there is no symbol column: the symbol is
  ``LoadOptions.symbol`` or the file name's stem.
- **Times**: ISO 8601 with or without an offset, dates alone,
  ``dd.mm.yyyy``, ``mm/dd/yyyy``, ``yyyy/mm/dd``, ``yyyymmdd`` (each with an
  optional ``HH:MM[:SS[.fff]]``), epoch seconds or milliseconds, and the
  datetime values of a Parquet column. Day-first or month-first is detected
  from the values (a day above 12 decides; without one, ``.`` means day-first
  and ``/`` month-first) unless ``day_first`` is given. Times without an
  offset are in ``timezone`` (New York by default; UTC when the column is
  named ``gmt``/``utc``).
- **Sessions**: ``all`` keeps every bar; ``regular`` keeps intraday bars that
  overlap 09:30-16:00 New York on weekdays; ``HH:MM-HH:MM Area/City`` names
  another session. Daily and coarser bars are kept whole.
- **Adj Close**: ``adjust="adj-close"`` (the default) multiplies open, high,
  low and close by ``adj close / close`` of the row (splits and dividends, as
  the export computed them); ``adjust="none"`` ignores the column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from core.annualisation import annualisation
from core.bars import BarDataError, BarFrame, RawRow, _to_ns, rows_to_frame

UTC = ZoneInfo("UTC")
DEFAULT_TIMEZONE = "America/New_York"
REGULAR_SESSION = "09:30-16:00 America/New_York"
FIELDS = ("timestamp", "symbol", "open", "high", "low", "close", "adj_close", "volume")
ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": (
        "timestamp", "datetime", "date", "time", "gmttime", "localtime", "utctime",
        "opentime", "timestamputc", "timeutc", "dateutc", "datetimeutc", "gmt", "utc",
    ),
    "symbol": ("symbol", "ticker", "instrument", "pair", "asset"),
    "open": ("open", "o", "openprice"),
    "high": ("high", "h", "highprice"),
    "low": ("low", "l", "lowprice"),
    "close": ("close", "c", "closeprice", "last"),
    "adj_close": ("adjclose", "adjustedclose", "adjclose*"),
    "volume": ("volume", "vol", "v", "volumeshares"),
}  # fmt: skip
"""Header names (lower case, without spaces, ``_`` or ``.``) of each field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOptions:
    """How to read a file that is not in the project's layout (all optional)."""

    symbol: str | None = None
    """Symbol of a file without a symbol column (default: the file name's stem)."""
    columns: tuple[tuple[str, str], ...] = ()
    """``(field, column name)`` pairs for headers the aliases miss: ``(("timestamp", "Day"),)``."""
    day_first: bool | None = None
    """``dd.mm.yyyy`` / ``dd/mm/yyyy`` dates; None: detected from the values."""
    timezone: str | None = None
    """Zone of times without an offset; None: New York, or UTC for a GMT/UTC column."""
    session: str = "all"
    """``all``, ``regular`` (09:30-16:00 New York) or ``HH:MM-HH:MM Area/City``."""
    adjust: str = "adj-close"
    """``adj-close``: scale prices by Adj Close / Close where that column exists; ``none``."""
    volume_scale: float = 1.0
    """Multiplies the volume (1.0)."""

    def __post_init__(self) -> None:
        unknown = [f for f, _ in self.columns if f not in FIELDS]
        if unknown:
            raise BarDataError("options", None, f"unknown column fields {unknown}; use {FIELDS}")
        if self.adjust not in ("adj-close", "none"):
            raise BarDataError(
                "options", None, f"adjust is 'adj-close' or 'none', not {self.adjust!r}"
            )
        if self.timezone is not None:
            zone(self.timezone)
        parse_session(self.session)

    def query(self) -> str:
        """These options as the ``?key=value&...`` suffix of a dataset (empty when default)."""
        parts = []
        default = LoadOptions()
        for name in ("symbol", "day_first", "timezone", "session", "adjust", "volume_scale"):
            value = getattr(self, name)
            if value != getattr(default, name):
                text = ("1" if value else "0") if isinstance(value, bool) else str(value)
                parts.append(f"{name}={text}")
        parts += [f"column.{f}={c}" for f, c in self.columns]
        return "?" + "&".join(parts) if parts else ""

    @classmethod
    def from_query(cls, query: str, source: str) -> LoadOptions:
        """Parse a dataset's ``key=value&...`` suffix (``query`` without the ``?``)."""
        values: dict[str, object] = {}
        columns = []
        for part in filter(None, query.split("&")):
            key, sep, value = part.partition("=")
            if not sep:
                raise BarDataError(source, None, f"option {part!r} is not key=value")
            if key.startswith("column."):
                columns.append((key.removeprefix("column."), value))
            elif key == "day_first":
                values[key] = value.lower() in ("1", "true", "yes")
            elif key == "volume_scale":
                values[key] = float(value)
            elif key in ("symbol", "timezone", "session", "adjust"):
                values[key] = value
            else:
                raise BarDataError(source, None, f"unknown option {key!r} (see docs/data.md)")
        return cls(columns=tuple(columns), **values)  # type: ignore[arg-type]


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or a clear refusal."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BarDataError(
            "options", None, f"time zone {name!r} is unknown (use an IANA name like Europe/London)"
        ) from None


@dataclass(frozen=True, slots=True)
class Session:
    """Trading hours: bars overlapping ``[start, end)`` local time on weekdays."""

    start: time
    end: time
    zone: ZoneInfo
    label: str


def parse_session(text: str) -> Session | None:
    """``all`` -> None; ``regular`` or ``HH:MM-HH:MM Area/City`` -> a ``Session``."""
    if text == "all":
        return None
    spec = REGULAR_SESSION if text == "regular" else text
    match = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s+(\S+)", spec.strip())
    if not match:
        raise BarDataError(
            "options", None, f"session {text!r} is not 'all', 'regular' or 'HH:MM-HH:MM Area/City'"
        )
    h1, m1, h2, m2, name = match.groups()
    start, end = time(int(h1), int(m1)), time(int(h2), int(m2))
    if end <= start:
        raise BarDataError("options", None, f"session {text!r} ends before it starts")
    return Session(start, end, zone(name), spec)


def _key(name: str) -> str:
    return re.sub(r"[\s_.\-()]", "", name.strip().lower())


def resolve_columns(header: Sequence[str], source: str, options: LoadOptions) -> dict[str, int]:
    """Field -> column index for ``header`` (aliases, then the options' map)."""
    keys = [_key(h) for h in header]
    found: dict[str, int] = {}
    for field, aliases in ALIASES.items():
        for alias in aliases:
            if alias in keys:
                found[field] = keys.index(alias)
                break
    if "date" in keys and "time" in keys and found.get("timestamp") == keys.index("date"):
        found["time_of_day"] = keys.index("time")
    for field, column in options.columns:
        if column not in header:
            raise BarDataError(
                source, 1, f"column {column!r} (for {field}) is not in {list(header)}"
            )
        found[field] = list(header).index(column)
    missing = [f for f in ("timestamp", "open", "high", "low", "close", "volume") if f not in found]
    if missing:
        raise BarDataError(
            source,
            1,
            f"header {list(header)} has no {', '.join(missing)} column; name them with "
            f"--column FIELD=NAME (fields: {', '.join(FIELDS)}; see docs/data.md)",
        )
    return found


Cell = object
DMY = re.compile(
    r"(\d{1,2})([./-])(\d{1,2})\2(\d{4})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?"
)
YMD = re.compile(
    r"(\d{4})([./])(\d{1,2})\2(\d{1,2})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?"
)


def _detect_day_first(values: Iterable[str]) -> tuple[bool | None, str]:
    """From ``a?b?yyyy`` dates: whether a is the day, and why (None: no such dates)."""
    first_big = second_big = False
    separator = ""
    for value in values:
        match = DMY.fullmatch(value.strip())
        if not match:
            continue
        separator = separator or match.group(2)
        first_big |= int(match.group(1)) > 12
        second_big |= int(match.group(3)) > 12
        if first_big and second_big:
            break
    if first_big and second_big:
        return None, "dates have days above 12 in both places"
    if first_big:
        return True, "day-first dates (a day above 12 comes first)"
    if second_big:
        return False, "month-first dates (a day above 12 comes second)"
    if separator:
        day_first = separator == "."
        return day_first, f"{'day' if day_first else 'month'}-first dates (by the '{separator}')"
    return None, ""


class _TimeParser:
    """Parses the cells of the time column(s) into UTC nanoseconds."""

    def __init__(self, tz: ZoneInfo, day_first: bool, source: str) -> None:
        self.tz = tz
        self.day_first = day_first
        self.source = source
        self.naive = 0
        """How many times had no offset (and were read in ``tz``)."""

    def __call__(self, cell: Cell, clock: Cell, row: int) -> int:
        if isinstance(cell, datetime):
            if cell.tzinfo is not None:
                return _to_ns(cell)
            self.naive += 1
            return _to_ns(cell.replace(tzinfo=self.tz))
        if isinstance(cell, date):
            self.naive += 1
            return _to_ns(datetime.combine(cell, time(0, 0), tzinfo=self.tz))
        if isinstance(cell, int | float) and not isinstance(cell, bool):
            return self._epoch(float(cell), str(cell), row)
        text = str(cell).strip()
        if clock is not None and str(clock).strip():
            text = f"{text} {str(clock).strip()}"
        return self._text(text, row)

    def _epoch(self, value: float, text: str, row: int) -> int:
        if 1e9 <= value < 1e11:
            return int(round(value * 1e9))
        if 1e12 <= value < 1e14:
            return int(round(value * 1e6))
        raise BarDataError(self.source, row, f"timestamp {text!r} is not a date or an epoch time")

    def _text(self, text: str, row: int) -> int:
        if re.fullmatch(r"\d{8}", text):
            try:
                day = date(int(text[:4]), int(text[4:6]), int(text[6:8]))
            except ValueError:
                raise BarDataError(self.source, row, f"date {text!r} is not YYYYMMDD") from None
            self.naive += 1
            return _to_ns(datetime.combine(day, time(0, 0), tzinfo=self.tz))
        if re.fullmatch(r"\d{10}|\d{13}|\d{10}\.\d+", text):
            return self._epoch(float(text), text, row)
        match = DMY.fullmatch(text)
        if match:
            a, _, b, yy, hh, mm, ss, frac, offset = match.groups()
            dd, mo = (a, b) if self.day_first else (b, a)
            return self._build(text, row, int(yy), int(mo), int(dd), hh, mm, ss, frac, offset)
        match = YMD.fullmatch(text)
        if match:
            yy, _, mo, dd, hh, mm, ss, frac, offset = match.groups()
            return self._build(text, row, int(yy), int(mo), int(dd), hh, mm, ss, frac, offset)
        try:
            moment = datetime.fromisoformat(text.replace(" UTC", "+00:00"))
        except ValueError:
            raise BarDataError(
                self.source,
                row,
                f"timestamp {text!r} is not a date and time this loader knows "
                "(ISO 8601, dd.mm.yyyy, mm/dd/yyyy, yyyy/mm/dd, yyyymmdd or epoch)",
            ) from None
        return self(moment, None, row)

    def _build(
        self, text: str, row: int, year: int, month: int, day: int,
        hh: str | None, mm: str | None, ss: str | None, frac: str | None, offset: str | None,
    ) -> int:  # fmt: skip
        try:
            moment = datetime(
                year, month, day, int(hh or 0), int(mm or 0), int(ss or 0),
                int((frac or "0").ljust(6, "0")[:6]), tzinfo=UTC,
            )  # fmt: skip
        except ValueError as e:
            order = "day-first" if self.day_first else "month-first"
            raise BarDataError(
                self.source, row, f"timestamp {text!r} is not a valid {order} date ({e})"
            ) from None
        if offset == "Z":
            return _to_ns(moment)
        if offset:
            sign = 1 if offset[0] == "+" else -1
            digits = offset[1:].replace(":", "")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            return _to_ns(moment - sign * delta)
        self.naive += 1
        return _to_ns(moment.replace(tzinfo=self.tz))


def _number(cell: Cell, name: str, source: str, row: int) -> float:
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        x = float(cell)
    else:
        text = "" if cell is None else str(cell).strip()
        try:
            x = float(text)
        except ValueError:
            raise BarDataError(source, row, f"{name} {text!r} is not a number") from None
    if not math.isfinite(x):
        raise BarDataError(source, row, f"{name} is {cell!r}, not a finite number")
    return x


def read_table(
    header: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    source: str,
    options: LoadOptions,
    *,
    default_symbol: str | None = None,
    first_row: int = 2,
) -> BarFrame:
    """Validate and align the bars of a table in any recognised layout.

    ``rows`` are the cells under ``header``; ``first_row`` is the row number of
    the first of them in the file (2 for a CSV with a header, 1 for Parquet),
    so errors name the row a user can find.
    """
    cols = resolve_columns(header, source, options)
    table = [list(r) for r in rows if any(c not in (None, "") for c in r)]
    if not table:
        raise BarDataError(source, None, "file has a header but no bars")
    notes: list[str] = []
    symbol_col = cols.get("symbol")
    fixed_symbol = options.symbol or default_symbol
    if symbol_col is None:
        if not fixed_symbol:
            raise BarDataError(
                source, 1, "no symbol column: give the symbol with --symbol (or name the file)"
            )
        notes.append(f"one symbol per file: {fixed_symbol}")
    name = str(header[cols["timestamp"]]).strip().lower()
    tz_name = options.timezone or ("UTC" if "gmt" in name or "utc" in name else DEFAULT_TIMEZONE)
    ts_col, clock_col = cols["timestamp"], cols.get("time_of_day")
    day_first = options.day_first
    if day_first is None:
        detected, why = _detect_day_first(str(r[ts_col]) for r in table)
        if why and detected is None:
            raise BarDataError(source, None, f"{why}: give --day-first or --month-first")
        day_first = bool(detected)
        if why:
            notes.append(why)
    parse_time = _TimeParser(zone(tz_name), day_first, source)
    width = len(header)
    adjust = options.adjust == "adj-close" and "adj_close" in cols
    if adjust:
        notes.append("prices adjusted by Adj Close / Close")
    elif "adj_close" in cols:
        notes.append("Adj Close ignored")

    def raw() -> Iterator[RawRow]:
        for i, cells in enumerate(table):
            row = first_row + i
            if len(cells) != width:
                raise BarDataError(source, row, f"expected {width} fields, found {len(cells)}")
            symbol = str(cells[symbol_col]).strip() if symbol_col is not None else fixed_symbol
            if not symbol:
                raise BarDataError(source, row, "symbol is empty")
            clock = cells[clock_col] if clock_col is not None else None
            ts = parse_time(cells[ts_col], clock, row)
            o, h, lo, c, v = (
                _number(cells[cols[f]], f, source, row)
                for f in ("open", "high", "low", "close", "volume")
            )
            if adjust:
                adj = _number(cells[cols["adj_close"]], "adj close", source, row)
                if c <= 0 or adj <= 0:
                    raise BarDataError(source, row, f"close {c} or adj close {adj} is not positive")
                k = adj / c
                o, h, lo, c = o * k, h * k, lo * k, adj
            yield row, str(symbol), ts, (o, h, lo, c, v * options.volume_scale)

    rows_out = list(raw())
    rows_out = _in_time_order(rows_out, notes)
    session = parse_session(options.session)
    if session is not None:
        rows_out = _in_session(rows_out, session, source, notes)
    frame = rows_to_frame(rows_out, source)
    if parse_time.naive:
        notes.append(f"{parse_time.naive:,} times without a UTC offset read in {tz_name}")
    return replace(frame, notes=tuple(notes))


def _in_time_order(rows: list[RawRow], notes: list[str]) -> list[RawRow]:
    """Reverse a file written newest first (every symbol's times strictly decreasing)."""
    by_symbol: dict[str, list[int]] = {}
    for _, symbol, ts, _ in rows:
        by_symbol.setdefault(symbol, []).append(ts)
    descending = all(
        len(t) > 1 and all(a > b for a, b in zip(t, t[1:], strict=False))
        for t in by_symbol.values()
    )
    if descending:
        notes.append("newest first in the file: read in reverse")
        return rows[::-1]
    return rows


def _in_session(
    rows: list[RawRow], session: Session, source: str, notes: list[str]
) -> list[RawRow]:
    stamps = np.array(sorted({ts for _, _, ts, _ in rows}), dtype=np.int64)
    bar = annualisation(stamps).bar_seconds
    if bar >= 20 * 3600 or bar == 0:
        notes.append(f"session {session.label}: daily or coarser bars, all kept")
        return rows
    inside: dict[int, bool] = {}  # by timestamp: every symbol's bar of a time is judged once
    for ts in stamps.tolist():
        start = datetime.fromtimestamp(ts / 1e9, tz=session.zone)
        end = start + timedelta(seconds=bar)
        day_open = datetime.combine(start.date(), session.start, tzinfo=session.zone)
        day_close = datetime.combine(start.date(), session.end, tzinfo=session.zone)
        inside[ts] = start.weekday() < 5 and start < day_close and end > day_open
    kept = [row for row in rows if inside[row[2]]]
    dropped = len(rows) - len(kept)
    notes.append(f"session {session.label}: {dropped} of {len(rows)} bars outside it dropped")
    if not kept:
        raise BarDataError(source, None, f"no bar falls in the session {session.label}")
    return kept


def inspect_lines(frame: BarFrame) -> list[str]:
    """What ``tradingbot data inspect`` prints: symbols, span, interval, sessions, gaps, notes."""
    from core.annualisation import HOUR, interval_label
    from core.bars import timestamp_ns_to_iso

    yearly = annualisation(frame.timestamps)
    coverage = frame.present.mean(axis=0) if frame.n_steps else np.zeros(frame.n_symbols)
    shown = ", ".join(frame.symbols[:20]) + (" ..." if frame.n_symbols > 20 else "")
    lines = [
        f"source        {frame.source}",
        f"symbols       {frame.n_symbols}: {shown}",
        f"span          {timestamp_ns_to_iso(int(frame.timestamps[0]))} .. "
        f"{timestamp_ns_to_iso(int(frame.timestamps[-1]))} (New York time)",
        f"bars          {int(frame.present.sum()):,} at {frame.n_steps:,} timestamps",
        f"bar interval  {interval_label(yearly.bar_seconds)}",
        f"sessions      {yearly.bars_per_session} bars a session, {yearly.calendar}",
        f"annualisation {yearly.describe()}",
    ]
    full = int(np.count_nonzero(coverage >= 1.0))
    lines.append(f"gaps          {full} of {frame.n_symbols} symbols have a bar at every timestamp")
    for j in np.argsort(coverage, kind="stable")[:5]:
        if coverage[j] < 1.0:
            missing = int(frame.n_steps - frame.present[:, j].sum())
            share = f"{coverage[j]:.1%}" if coverage[j] < 0.999 else ">99.9%"
            lines.append(
                f"              {frame.symbols[j]:<8} {share} of timestamps ({missing:,} missing)"
            )
    step = yearly.bar_seconds * 1_000_000_000
    if step and frame.n_steps > 1:
        gaps = np.diff(frame.timestamps)
        inside = (gaps > step) & (gaps <= max(3 * step, 3 * HOUR)) & (step < 20 * HOUR)
        holes = np.flatnonzero(inside)
        if holes.size:
            worst = int(holes[np.argmax(gaps[holes])])
            lines.append(
                f"              {holes.size:,} holes inside sessions on the common time axis "
                f"(largest {interval_label(int(gaps[worst]) // 1_000_000_000)} after "
                f"{timestamp_ns_to_iso(int(frame.timestamps[worst]))})"
            )
    problems = [*frame.notes]
    problems += [
        f"repaired: {r.source} row {r.row} {r.symbol}: {r.problem}" for r in frame.repairs[:5]
    ]
    if len(frame.repairs) > 5:
        problems.append(f"... and {len(frame.repairs) - 5} more repaired bars")
    lines.append(
        f"read as       {problems[0] if problems else 'the project layout, nothing repaired'}"
    )
    lines += [f"              {p}" for p in problems[1:]]
    return lines
