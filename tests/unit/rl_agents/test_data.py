"""Data sets: the bundled bytetheory bars, CSV files, and the complete-symbol universe."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from core.bars import BarDataError, BarFrame
from rl_agents.data import BYTETHEORY, DEFAULT_UNIVERSE, load_bars, universe

"""Historical bars live beside the checkout (never in the repository)."""
HEADER = "timestamp,symbol,open,high,low,close,volume\n"


def ns(year: int, month: int, day: int, hour: int) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp()) * 1_000_000_000


@pytest.fixture(scope="module")
def bytetheory() -> BarFrame:
    return load_bars(BYTETHEORY)


def test_bundled_bytetheory_bars_span_a_year_of_sp500(bytetheory: BarFrame) -> None:
    assert bytetheory.n_steps == 245
    assert bytetheory.n_symbols == 524
    # First row of the file: 20090821,A,25.6,25.61,25.22,25.55,34758 (hundreds of shares).
    a = bytetheory.symbols.index("A")
    assert bytetheory.timestamps[0] == ns(2009, 8, 21, 4)  # midnight New York, EDT
    assert bytetheory.close[0, a] == 25.55
    assert bytetheory.volume[0, a] == 3_475_800.0


def test_default_universe_is_the_first_143_complete_symbols(bytetheory: BarFrame) -> None:
    chosen = universe(bytetheory, DEFAULT_UNIVERSE)

    assert DEFAULT_UNIVERSE == 143
    assert chosen.n_symbols == 143
    assert chosen.n_steps == 245
    assert chosen.symbols[:3] == ("A", "AA", "ABC")
    assert chosen.symbols[-1] == "GNW"
    assert list(chosen.symbols) == sorted(chosen.symbols)
    assert chosen.present.all()


def test_universe_of_a_span_is_complete_over_that_span(bytetheory: BarFrame) -> None:
    chosen = universe(bytetheory, 10, start=100, steps=20)

    assert chosen.n_steps == 20
    assert chosen.timestamps[0] == bytetheory.timestamps[100]
    assert chosen.present.all()


def test_universe_larger_than_the_complete_symbols_is_refused(bytetheory: BarFrame) -> None:
    with pytest.raises(BarDataError, match="asked for 600"):
        universe(bytetheory, 600)


def test_universe_skips_symbols_with_a_missing_bar() -> None:
    frame = BarFrame(
        symbols=("A", "B", "C"),
        timestamps=np.array([1, 2], dtype=np.int64),
        open=np.ones((2, 3)),
        high=np.ones((2, 3)),
        low=np.ones((2, 3)),
        close=np.ones((2, 3)),
        volume=np.ones((2, 3)),
        present=np.array([[True, False, True], [True, True, True]]),
    )

    assert universe(frame, 2).symbols == ("A", "C")


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"

    with pytest.raises(BarDataError) as caught:
        load_bars(str(path))

    assert caught.value.source == str(path)
    assert "no such file" in caught.value.problem


@pytest.mark.parametrize("gzipped", [False, True])
def test_csv_file_of_the_shared_layout_is_loaded(tmp_path: Path, gzipped: bool) -> None:
    text = HEADER + "2021-03-31T00:00:00-04:00,SPY,391,397,390.5,396,1500\n"
    path = tmp_path / ("bars.csv.gz" if gzipped else "bars.csv")
    if gzipped:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)

    frame = load_bars(str(path))

    assert frame.symbols == ("SPY",)
    assert frame.close[0, 0] == 396.0
    assert frame.source == str(path)


def test_shared_daily_us_equities_load_through_load_bars(
    shared_data: Callable[[str], Path],
) -> None:
    path = shared_data("us_equities_1d.csv.gz")

    frame = load_bars(str(path))

    assert frame.symbols == (
        "AAPL",
        "AIG",
        "BAC",
        "EEM",
        "FB",
        "GOOG",
        "IBM",
        "IWM",
        "QQQ",
        "SPY",
        "USO",
        "WM",
    )
    assert frame.timestamps[0] == ns(1998, 1, 2, 5)  # midnight New York, EST
    assert frame.timestamps[-1] == ns(2021, 3, 31, 4)  # midnight New York, EDT
    fb = frame.symbols.index("FB")
    assert not frame.present[0, fb]  # listed in 2012
    assert frame.present[-1].all()
    assert set(frame.complete_symbols()) == {"AAPL", "AIG", "BAC", "IBM", "SPY"}


def test_universe_with_lower_coverage_admits_gappy_symbols_and_drops_empty_steps() -> None:
    frame = BarFrame(
        symbols=("A", "B", "C"),
        timestamps=np.array([1, 2, 3, 4], dtype=np.int64),
        open=np.ones((4, 3)),
        high=np.ones((4, 3)),
        low=np.ones((4, 3)),
        close=np.ones((4, 3)),
        volume=np.ones((4, 3)),
        present=np.array(
            [[True, False, True], [True, True, False], [False, False, True], [True, True, True]]
        ),
    )

    chosen = universe(frame, 2, min_coverage=0.5)

    # A: 3 of 4 bars, B: 2 of 4, C: 3 of 4; A and B come first alphabetically.
    assert chosen.symbols == ("A", "B")
    # At timestamp 3 neither A nor B has a bar: that step is dropped.
    assert chosen.timestamps.tolist() == [1, 2, 4]


def test_shared_minute_bars_replay_with_gaps_allowed(shared_data: Callable[[str], Path]) -> None:
    path = shared_data("us_equities_1min_2013-10.csv")

    frame = universe(load_bars(str(path)), 4, steps=300, min_coverage=0.3)

    assert frame.symbols == ("AIG", "BAC", "IBM", "SPY")
    assert frame.present.any(axis=1).all()
    assert not frame.present.all()


def test_chronological_split_keeps_later_days_out_of_earlier_spans() -> None:
    from rl_agents.data import chronological_split

    split = chronological_split(245)

    assert split == {"train": (0, 171), "validation": (171, 207), "test": (207, 245)}
    with pytest.raises(ValueError, match="too few"):
        chronological_split(5)
