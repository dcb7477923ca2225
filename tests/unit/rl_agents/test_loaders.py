"""Bring your own bars: the shared files, and foreign layouts the tests write from them.

Each test writes real bars (``../shared/data``) the way another tool exports
them (Yahoo's one-symbol CSV with Adj Close, a forex platform's day-first
GMT times, a folder of per-symbol files, Parquet, a column map) and checks
that ``load_bars`` reads back the same bars the project's own layout gives.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from core.annualisation import annualisation
from core.bars import BarDataError, BarFrame
from core.layouts import LoadOptions, inspect_lines
from rl_agents.data import load_bars, split_dataset, symbol_of

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def daily(shared_data: Callable[[str], Path]) -> BarFrame:
    return load_bars(str(shared_data("us_equities_1d.csv.gz"))).select(["AAPL", "IBM", "SPY"])


@pytest.fixture(scope="module")
def minutes(shared_data: Callable[[str], Path]) -> BarFrame:
    return load_bars(str(shared_data("us_equities_1min_2013-10.csv")))


def bars_of(frame: BarFrame, symbol: str, last: int | None = None) -> list[tuple[float, ...]]:
    """(t, o, h, l, c, v) of one symbol's present bars."""
    j = frame.symbols.index(symbol)
    rows = np.flatnonzero(frame.present[:, j])[:last]
    return [
        (int(frame.timestamps[i]), float(frame.open[i, j]), float(frame.high[i, j]),
         float(frame.low[i, j]), float(frame.close[i, j]), float(frame.volume[i, j]))
        for i in rows
    ]  # fmt: skip


def same(got: list[tuple[float, ...]], want: list[tuple[float, ...]]) -> None:
    """Same times, prices and volumes (to float rounding)."""
    assert len(got) == len(want)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-12)


def write_yahoo(
    frame: BarFrame, symbol: str, path: Path, factor: float = 1.0, n: int = 400
) -> None:
    """Yahoo Finance's export: Date,Open,High,Low,Close,Adj Close,Volume; no symbol column."""
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for t, o, h, lo, c, v in bars_of(frame, symbol, n):
        day = datetime.fromtimestamp(t / 1e9, NEW_YORK).date().isoformat()
        lines.append(f"{day},{o!r},{h!r},{lo!r},{c!r},{c * factor!r},{int(v)}")
    path.write_text("\n".join(lines) + "\n")


def test_yahoo_export_uses_the_file_name_as_symbol_and_adj_close_to_adjust(
    daily: BarFrame, tmp_path: Path
) -> None:
    path = tmp_path / "SPY.csv"
    write_yahoo(daily, "SPY", path, factor=0.5)

    adjusted = load_bars(str(path))
    ignored = load_bars(f"{path}?adjust=none")

    original = bars_of(daily, "SPY", 400)
    assert adjusted.symbols == ignored.symbols == ("SPY",)
    assert [b[0] for b in bars_of(ignored, "SPY")] == [b[0] for b in original]
    same(bars_of(ignored, "SPY"), original)
    np.testing.assert_allclose(adjusted.close[:, 0], ignored.close[:, 0] * 0.5)
    np.testing.assert_allclose(adjusted.open[:, 0], ignored.open[:, 0] * 0.5)
    np.testing.assert_array_equal(adjusted.volume, ignored.volume)
    assert "prices adjusted by Adj Close / Close" in adjusted.notes
    assert "Adj Close ignored" in ignored.notes
    assert annualisation(adjusted.timestamps).periods_per_year == 252


def test_a_folder_of_one_file_per_symbol_is_one_frame(daily: BarFrame, tmp_path: Path) -> None:
    for symbol in ("AAPL", "IBM", "SPY"):
        write_yahoo(daily, symbol, tmp_path / f"{symbol}.csv", n=300)
    (tmp_path / "README.md").write_text("not bars")

    frame = load_bars(f"{tmp_path}?adjust=none")

    assert frame.symbols == ("AAPL", "IBM", "SPY")
    for symbol in frame.symbols:
        same(bars_of(frame, symbol), bars_of(daily, symbol, 300))
    assert frame.notes[0] == "3 files, one per symbol"


def test_a_symbol_in_two_files_of_a_folder_is_refused_naming_both(
    daily: BarFrame, tmp_path: Path
) -> None:
    write_yahoo(daily, "SPY", tmp_path / "SPY.csv", n=20)
    write_yahoo(daily, "SPY", tmp_path / "SPY_copy.csv", n=20)

    with pytest.raises(BarDataError) as caught:
        load_bars(str(tmp_path))

    assert caught.value.source == str(tmp_path / "SPY_copy.csv")
    assert caught.value.problem == f"symbol SPY is also in {tmp_path / 'SPY.csv'}"


def write_forex(frame: BarFrame, symbol: str, path: Path, n: int) -> None:
    """A forex platform's export: 'Gmt time' as dd.mm.yyyy HH:MM:SS.fff in UTC."""
    lines = ["Gmt time,Open,High,Low,Close,Volume"]
    for t, o, h, lo, c, v in bars_of(frame, symbol, n):
        moment = datetime.fromtimestamp(t / 1e9, UTC)
        lines.append(f"{moment:%d.%m.%Y %H:%M:%S}.000,{o!r},{h!r},{lo!r},{c!r},{v!r}")
    path.write_text("\n".join(lines) + "\n")


def test_day_first_gmt_times_are_read_as_utc(minutes: BarFrame, tmp_path: Path) -> None:
    path = tmp_path / "SPY_1min.csv.gz"
    plain = tmp_path / "plain.csv"
    write_forex(minutes, "SPY", plain, n=3000)
    path.write_bytes(gzip.compress(plain.read_bytes()))

    frame = load_bars(str(path))

    assert frame.symbols == ("SPY",)
    same(bars_of(frame, "SPY"), bars_of(minutes, "SPY", 3000))
    assert "day-first dates (by the '.')" in frame.notes or any(
        "day-first" in n for n in frame.notes
    )
    assert any("read in UTC" in n for n in frame.notes)


def test_naive_times_are_read_in_the_given_time_zone(minutes: BarFrame, tmp_path: Path) -> None:
    path = tmp_path / "SPY.csv"
    lines = ["Datetime,Open,High,Low,Close,Volume"]
    for t, o, h, lo, c, v in bars_of(minutes, "SPY", 500):
        local = datetime.fromtimestamp(t / 1e9, ZoneInfo("Europe/Berlin"))
        lines.append(f"{local:%Y-%m-%d %H:%M:%S},{o},{h},{lo},{c},{v}")
    path.write_text("\n".join(lines) + "\n")

    frame = load_bars(f"{path}?timezone=Europe/Berlin")
    shifted = load_bars(str(path))  # read as New York: six hours later

    assert frame.timestamps.tolist() == [b[0] for b in bars_of(minutes, "SPY", 500)]
    assert int(shifted.timestamps[0] - frame.timestamps[0]) == 6 * 3600 * 10**9


def test_month_first_slashes_and_a_column_map(daily: BarFrame, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    lines = ["Day;Ticker;Px Open;Px High;Px Low;Px Last;Shares"]
    for symbol in ("IBM", "SPY"):
        for t, o, h, lo, c, v in bars_of(daily, symbol, 100):
            day = datetime.fromtimestamp(t / 1e9, NEW_YORK)
            lines.append(f"{day:%m/%d/%Y};{symbol};{o!r};{h!r};{lo!r};{c!r};{int(v)}")
    path.write_text("\n".join(lines) + "\n")
    columns = "column.timestamp=Day&column.open=Px Open&column.high=Px High&column.low=Px Low"
    columns += "&column.close=Px Last&column.volume=Shares"

    frame = load_bars(f"{path}?{columns}")

    assert frame.symbols == ("IBM", "SPY")
    for symbol in frame.symbols:
        same(bars_of(frame, symbol), bars_of(daily, symbol, 100))
    assert any("month-first" in n for n in frame.notes)


def test_a_day_first_option_beats_detection_and_refuses_an_impossible_date(
    tmp_path: Path,
) -> None:
    path = tmp_path / "X.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Volume\n"
        "01/02/2020,1,1,1,1,1\n02/03/2020,1,1,1,1,1\n03/13/2020,1,1,1,1,1\n"
    )
    assert load_bars(str(path)).n_steps == 3  # month-first, from the 13

    with pytest.raises(BarDataError) as caught:
        load_bars(f"{path}?day_first=1")

    assert (caught.value.source, caught.value.row) == (str(path), 4)
    assert "'03/13/2020' is not a valid day-first date" in caught.value.problem


def test_parquet_with_timestamps_and_the_regular_session(minutes: BarFrame, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    j = minutes.symbols.index("SPY")
    rows = np.flatnonzero(minutes.present[:, j])
    table = pa.table(
        {
            "time": pa.array(minutes.timestamps[rows], type=pa.timestamp("ns", tz="UTC")),
            "symbol": ["SPY"] * rows.size,
            "open": minutes.open[rows, j],
            "high": minutes.high[rows, j],
            "low": minutes.low[rows, j],
            "close": minutes.close[rows, j],
            "volume": minutes.volume[rows, j],
        }
    )
    path = tmp_path / "spy.parquet"
    pq.write_table(table, path)

    every = load_bars(str(path))
    regular = load_bars(f"{path}?session=regular")

    same(bars_of(every, "SPY"), bars_of(minutes, "SPY"))
    local = [datetime.fromtimestamp(t / 1e9, NEW_YORK) for t in regular.timestamps.tolist()]
    assert min(m.time() for m in local).isoformat() == "09:30:00"
    assert max(m.time() for m in local).isoformat() == "15:59:00"
    assert annualisation(every.timestamps).periods_per_year == 960 * 252
    assert annualisation(regular.timestamps).periods_per_year == 390 * 252


def test_gaps_stay_gaps_and_inspect_reports_them(daily: BarFrame, tmp_path: Path) -> None:
    write_yahoo(daily, "IBM", tmp_path / "IBM.csv", n=200)
    write_yahoo(daily, "SPY", tmp_path / "SPY.csv", n=200)
    text = (tmp_path / "IBM.csv").read_text().splitlines()
    (tmp_path / "IBM.csv").write_text("\n".join(text[:50] + text[60:]) + "\n")  # 10 days lost

    frame = load_bars(str(tmp_path))
    lines = inspect_lines(frame)

    assert frame.present[:, 1].all() and int((~frame.present[:, 0]).sum()) == 10
    report = "\n".join(lines)
    assert "symbols       2: IBM, SPY" in report
    assert "1 of 2 symbols have a bar at every timestamp" in report
    assert "IBM      95.0% of timestamps (10 missing)" in report
    assert "annualisation 252 periods/yr: 1d bars (weekdays)" in report


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("2020-01-06,1,2,1,1.5,1.5,100", "header"),  # replaced header below
        ("2020-01-07,null,2,1,1.5,1.5,100", "open 'null' is not a number"),
        ("2020-13-07,1,2,1,1.5,1.5,100", "is not a date and time this loader knows"),
        ("2020-01-07,1,2,1,1.5,1.5,-5", "volume -5.0 is negative"),
        ("2020-01-06,1,2,1,1.5,1.5,100", "duplicate bar for X"),
    ],
)
def test_refusals_name_the_file_the_row_and_the_problem(
    tmp_path: Path, row: str, problem: str
) -> None:
    path = tmp_path / "X.csv"
    header = "Date,Open,High,Low,Close,Adj Close,Volume"
    if problem == "header":
        header = "Date,Open,High,Low,Adj Close,Volume"
    path.write_text(f"{header}\n2020-01-06,1,2,1,1.5,1.5,100\n{row}\n")

    with pytest.raises(BarDataError) as caught:
        load_bars(str(path))

    assert caught.value.source == str(path)
    assert problem in caught.value.problem
    if problem == "header":
        assert caught.value.row == 1 and "--column" in caught.value.problem
    else:
        assert caught.value.row == 3


def test_options_travel_as_one_dataset_string() -> None:
    options = LoadOptions(symbol="EURUSD", day_first=True, timezone="UTC", session="regular")
    dataset = "/data/eurusd.csv" + options.query()
    assert split_dataset(dataset) == ("/data/eurusd.csv", options)
    with pytest.raises(BarDataError, match="unknown option 'colour'"):
        split_dataset("/data/x.csv?colour=red")
    with pytest.raises(BarDataError, match="time zone 'Mars/Olympus' is unknown"):
        split_dataset("/data/x.csv?timezone=Mars/Olympus")


def test_symbol_from_a_file_name() -> None:
    assert [symbol_of(Path(p)) for p in ("SPY.csv", "BTC-USD.csv.gz", "EURUSD_1h.parquet")] == [
        "SPY",
        "BTC-USD",
        "EURUSD",
    ]
