"""`tradingbot report RUN` on runs through the real broker, and foreign bar files replayed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.events import PortfolioClosed
from core.gates import gate_table
from core.report import buy_and_hold
from rl_agents.data import load_bars, universe
from services import kafka
from services.cli import main
from services.demo import format_summary
from services.pipeline import run_lockstep
from streams.topics import PORTFOLIO_EVENTS

CHARTS = ("actions", "alerts", "entropy", "equity", "pnl_by_symbol")


def test_report_files_exist_and_their_numbers_are_the_summarys(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = universe(load_bars("bytetheory"), 8, start=40, steps=60)
    asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id="it-report", frame=frame))
    out = tmp_path / "report"

    code = main(["report", "it-report", "--bootstrap", kafka_bootstrap, "--out", str(out)])

    assert code == 0
    for name in CHARTS:
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and min(image.size) >= 250
    events = asyncio.run(
        kafka.read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, "it-report", until=PortfolioClosed)
    )
    table = gate_table(events)
    s = table.summary
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["summary"]["final_equity"] == s.final_equity
    assert numbers["summary"]["total_return"] == s.total_return
    assert numbers["summary"]["sharpe"] == s.sharpe
    assert numbers["summary"]["max_drawdown"] == s.max_drawdown
    assert numbers["summary"]["trades"] == s.trades
    assert numbers["annualisation"] == "252 periods/yr: 1d bars (weekdays)"
    assert len(numbers["agents"]) == 8
    assert {a["symbol"]: a["pnl"] for a in numbers["agents"]} == {
        a.symbol: a.pnl for a in table.agents
    }
    # Buy-and-hold on the same days: from the run's bars on market.bars, as from the file.
    expected = buy_and_hold(frame.close, s.initial_equity, s.annualisation)
    assert numbers["buy_and_hold"]["total_return"] == pytest.approx(expected.total_return)
    # What the summary prints is what the report shows.
    page = (out / "index.html").read_text()
    printed = format_summary(s, benchmark=expected, table=table)
    for text in (f"{s.total_return:+.2%}", f"{s.max_drawdown:.2%}", f"{s.sharpe:.2f}",
                 f"{expected.total_return:+.2%}", s.annualisation.describe()):  # fmt: skip
        assert text in printed and text in page
    assert 'src="data:image/png;base64,' in page  # one self-contained file
    stdout = capsys.readouterr().out
    assert str(out / "index.html") in stdout and "annualised with 252 periods/yr" in stdout


def test_report_of_an_unknown_run_says_so_and_fails(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["report", "no-such-run", "--bootstrap", kafka_bootstrap, "--out", str(tmp_path)])

    assert code == 1
    assert "no run 'no-such-run' on portfolio.events" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_hourly_bars_from_parquet_replay_with_hourly_annualisation(
    kafka_bootstrap: str, tmp_path: Path, shared_data: Callable[[str], Path]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = shared_data("us_equities_1h.csv.gz")
    hourly = universe(load_bars(str(source)), 4, start=30_000, steps=70)
    cells: dict[str, list[object]] = {k: [] for k in ("Datetime", "Ticker", "Open", "High",
                                                     "Low", "Close", "Volume")}  # fmt: skip
    for j, symbol in enumerate(hourly.symbols):
        for i in np.flatnonzero(hourly.present[:, j]):
            cells["Datetime"].append(int(hourly.timestamps[i]))
            cells["Ticker"].append(symbol)
            for name, array in (("Open", hourly.open), ("High", hourly.high),
                                ("Low", hourly.low), ("Close", hourly.close),
                                ("Volume", hourly.volume)):  # fmt: skip
                cells[name].append(float(array[i, j]))
    table = pa.table(cells)
    table = table.set_column(
        0, "Datetime", pa.array(cells["Datetime"], type=pa.timestamp("ns", tz="America/New_York"))
    )
    path = tmp_path / "hourly.parquet"
    pq.write_table(table, path)

    frame = load_bars(str(path))
    asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id="it-hourly", frame=frame))
    events = asyncio.run(
        kafka.read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, "it-hourly", until=PortfolioClosed)
    )

    np.testing.assert_array_equal(frame.close, hourly.close)
    summary = gate_table(events).summary
    assert summary.steps == 70
    assert summary.annualisation.periods_per_year == 7 * 252
    assert "1,764 periods/yr: 1h bars, 7 a session x 252 sessions" in format_summary(summary)


def test_a_folder_of_yahoo_exports_replays_without_converting(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    source = universe(load_bars("bytetheory"), 3, start=100, steps=25)
    for j, symbol in enumerate(source.symbols):
        lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
        for i in range(source.n_steps):
            day = datetime.fromtimestamp(source.timestamps[i] / 1e9, ZoneInfo("America/New_York"))
            o, h, lo, c = (float(a[i, j]) for a in (source.open, source.high, source.low,
                                                    source.close))  # fmt: skip
            lines.append(
                f"{day:%Y-%m-%d},{o!r},{h!r},{lo!r},{c!r},{c!r},{int(source.volume[i, j])}"
            )
        (tmp_path / f"{symbol}.csv").write_text("\n".join(lines) + "\n")

    frame = load_bars(str(tmp_path))
    asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id="it-yahoo", frame=frame))
    events = asyncio.run(
        kafka.read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, "it-yahoo", until=PortfolioClosed)
    )

    assert frame.symbols == source.symbols
    np.testing.assert_array_equal(frame.timestamps, source.timestamps)
    summary = gate_table(events).summary
    assert (summary.symbols, summary.steps, summary.bars) == (3, 25, 75)
    assert summary.annualisation.periods_per_year == 252
