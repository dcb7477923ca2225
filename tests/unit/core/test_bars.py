"""Bar parsing, validation, repair and alignment from in-memory CSV text."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pytest

from core.bars import (
    BarDataError,
    BarFrame,
    Repair,
    read_csv,
    rows_to_frame,
    timestamp_ns_to_iso,
)

SOURCE = "bars.csv"
HEADER = "timestamp,symbol,open,high,low,close,volume\n"
BYTETHEORY = "Date,Symbol,Open,High,Low,Close,Volume\n"
DAY1 = "2021-03-30T00:00:00-04:00"
DAY2 = "2021-03-31T00:00:00-04:00"


def ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Integer nanoseconds of a UTC wall-clock time."""
    moment = datetime(year, month, day, hour, minute, tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000


def parse(text: str, **kwargs: float) -> BarFrame:
    return read_csv(io.StringIO(text), SOURCE, **kwargs)


def test_shared_layout_is_aligned_on_one_time_axis() -> None:
    frame = parse(
        HEADER
        + f"{DAY1},SPY,390.0,392.0,389.0,391.0,1000\n"
        + f"{DAY1},AAPL,120.0,121.0,119.0,120.5,2000\n"
        + f"{DAY2},SPY,391.0,397.0,390.5,396.0,1500\n"
    )

    assert frame.symbols == ("AAPL", "SPY")
    # Midnight New York in EDT (-04:00) is 04:00 UTC.
    assert frame.timestamps.tolist() == [ns(2021, 3, 30, 4), ns(2021, 3, 31, 4)]
    assert frame.close[:, 1].tolist() == [391.0, 396.0]
    assert frame.open[0].tolist() == [120.0, 390.0]
    assert frame.volume[1, 1] == 1500.0
    assert (frame.n_steps, frame.n_symbols, frame.source) == (2, 2, SOURCE)
    assert frame.repairs == ()


def test_missing_bar_of_a_symbol_is_absent_there() -> None:
    frame = parse(HEADER + f"{DAY1},SPY,1,1,1,1,1\n{DAY1},AAPL,2,2,2,2,2\n{DAY2},SPY,3,3,3,3,3\n")

    assert frame.present.tolist() == [[True, True], [False, True]]
    assert np.isnan(frame.close[1, 0]) and np.isnan(frame.open[1, 0])
    assert frame.complete_symbols() == ["SPY"]


def test_bytetheory_layout_reads_dates_as_new_york_midnight_and_scales_volume() -> None:
    frame = parse(
        BYTETHEORY + "20090821,A,25.6,25.61,25.22,25.55,34758\n"
        "20091221,A,25.5,25.7,25.225,25.34,30891\n",
        volume_scale=100.0,
    )

    # 2009-08-21 is EDT (04:00 UTC); 2009-12-21 is EST (05:00 UTC).
    assert frame.timestamps.tolist() == [ns(2009, 8, 21, 4), ns(2009, 12, 21, 5)]
    assert frame.volume[:, 0].tolist() == [3_475_800.0, 3_089_100.0]


def test_header_whitespace_and_blank_lines_are_tolerated() -> None:
    frame = parse(
        " timestamp, symbol,open,high,low,close,volume \n\n" + f"{DAY1},SPY,1,2,1,2,3\n\n"
    )

    assert frame.n_steps == 1


def test_open_outside_high_low_widens_them_and_is_recorded() -> None:
    frame = parse(HEADER + f"{DAY1},SPY,1,2,1,2,3\n{DAY2},SPY,12.0,11.0,9.0,8.5,100\n")

    assert frame.high[1, 0] == 12.0  # widened to the open
    assert frame.low[1, 0] == 8.5  # widened to the close
    assert (frame.open[1, 0], frame.close[1, 0]) == (12.0, 8.5)
    (repair,) = frame.repairs
    assert isinstance(repair, Repair)
    assert (repair.source, repair.row, repair.symbol) == (SOURCE, 3, "SPY")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f"{DAY2},SPY,nan,2,1,2,3", "open is 'nan'"),
        (f"{DAY2},SPY,1,inf,1,2,3", "high is 'inf'"),
        (f"{DAY2},SPY,1,2,1,2,NaN", "volume is 'NaN'"),
        (f"{DAY2},SPY,0,2,1,2,3", "open price 0.0 is not positive"),
        (f"{DAY2},SPY,1,2,-1,2,3", "low price -1.0 is not positive"),
        (f"{DAY2},SPY,1,2,1,2,-3", "volume -3.0 is negative"),
        (f"{DAY2},SPY,1.5,1,2,1.5,3", "high 1.0 is below low 2.0"),
        (f"{DAY2},SPY,1,2,1,abc,3", "close 'abc' is not a number"),
        (f"{DAY2},SPY,1,2,1,,3", "close '' is not a number"),
        (f"{DAY2},SPY,1,2,1,2", "expected 7 fields, found 6"),
        (f"{DAY2},SPY,1,2,1,2,3,4", "expected 7 fields, found 8"),
        (f"{DAY2},,1,2,1,2,3", "symbol is empty"),
        ("2021-03-31,SPY,1,2,1,2,3", "has no UTC offset"),
        ("31/03/2021,SPY,1,2,1,2,3", "is not ISO 8601"),
        (f"{DAY1},SPY,1,2,1,2,3", "duplicate bar for SPY"),
        ("2021-03-29T00:00:00-04:00,SPY,1,2,1,2,3", "goes back in time"),
    ],
)
def test_bad_row_is_refused_naming_source_row_and_problem(line: str, problem: str) -> None:
    text = HEADER + f"{DAY1},SPY,1,2,1,2,3\n{DAY1},AAPL,1,2,1,2,3\n" + line + "\n"

    with pytest.raises(BarDataError) as caught:
        parse(text)

    assert (caught.value.source, caught.value.row) == (SOURCE, 4)
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{SOURCE}, row 4: ")


def test_duplicate_names_the_first_row() -> None:
    with pytest.raises(BarDataError) as caught:
        parse(HEADER + f"{DAY1},SPY,1,2,1,2,3\n{DAY1},SPY,1,2,1,2,3\n")

    assert caught.value.row == 3
    assert "first at row 2" in caught.value.problem


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("2009082,A,1,2,1,2,3", "is not YYYYMMDD"),
        ("20091332,A,1,2,1,2,3", "is not YYYYMMDD"),
        ("200908210,A,1,2,1,2,3", "is not YYYYMMDD"),
    ],
)
def test_bad_bytetheory_date_is_refused(line: str, problem: str) -> None:
    with pytest.raises(BarDataError) as caught:
        parse(BYTETHEORY + line + "\n")

    assert (caught.value.row, caught.value.source) == (2, SOURCE)
    assert problem in caught.value.problem


def test_wrong_header_is_refused_at_row_one() -> None:
    with pytest.raises(BarDataError) as caught:
        parse("time,symbol,open,high,low,close,volume\n" + f"{DAY1},SPY,1,2,1,2,3\n")

    assert (caught.value.source, caught.value.row) == (SOURCE, 1)
    assert "header" in caught.value.problem


def test_empty_file_is_refused() -> None:
    with pytest.raises(BarDataError) as caught:
        parse("")

    assert (caught.value.source, caught.value.row) == (SOURCE, 1)
    assert "empty" in caught.value.problem


def test_header_without_bars_is_refused() -> None:
    with pytest.raises(BarDataError) as caught:
        parse(HEADER)

    assert (caught.value.source, caught.value.row) == (SOURCE, None)
    assert "no bars" in caught.value.problem
    assert str(caught.value) == f"{SOURCE}: file has a header but no bars"


def test_rows_to_frame_validates_rows_from_any_source() -> None:
    t = ns(2021, 1, 4, 14, 30)
    frame = rows_to_frame(
        [
            (7, "IBM", t, (10.0, 11.0, 9.0, 10.5, 5.0)),
            (8, "IBM", t + 60_000_000_000, (10.5, 10.6, 10.4, 10.5, 0.0)),
        ],
        "feed",
    )

    assert frame.timestamps.tolist() == [t, t + 60_000_000_000]
    with pytest.raises(BarDataError) as caught:
        rows_to_frame([(7, "IBM", t, (10.0, 9.0, 11.0, 10.0, 5.0))], "feed")
    assert (caught.value.source, caught.value.row) == ("feed", 7)


def three_steps() -> BarFrame:
    return parse(
        HEADER
        + f"{DAY1},A,1,1,1,1,1\n{DAY1},B,2,2,2,2,2\n{DAY1},C,3,3,3,3,3\n"
        + f"{DAY2},A,4,4,4,4,4\n{DAY2},C,6,6,6,6,6\n"
        + "2021-04-01T00:00:00-04:00,B,8,9,7,12,8\n"  # repaired: close above high
    )


def test_select_keeps_the_asked_symbols_in_order_with_their_repairs() -> None:
    frame = three_steps()

    picked = frame.select(["C", "B"])

    assert picked.symbols == ("C", "B")
    assert picked.close[0].tolist() == [3.0, 2.0]
    assert picked.close[1, 0] == 6.0 and np.isnan(picked.close[1, 1])
    assert picked.present.tolist() == [[True, True], [True, False], [False, True]]
    assert [r.symbol for r in picked.repairs] == ["B"]
    assert frame.select(["A"]).repairs == ()


def test_select_of_unknown_symbol_is_refused() -> None:
    with pytest.raises(BarDataError, match="unknown symbols"):
        three_steps().select(["A", "ZZZ"])


def test_window_drops_timestamps_where_no_symbol_has_a_bar() -> None:
    frame = three_steps().select(["A", "C"])  # neither has a bar on the third day

    window = frame.window(0, 3)

    assert window.n_steps == 2
    assert window.complete_symbols() == ["A", "C"]


def test_window_outside_the_frame_is_refused() -> None:
    with pytest.raises(BarDataError, match="outside 0:3"):
        three_steps().window(1, 4)


def test_timestamp_is_shown_in_new_york_time() -> None:
    assert timestamp_ns_to_iso(ns(2021, 3, 30, 4)) == "2021-03-30T00:00:00-04:00"
