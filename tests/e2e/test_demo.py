"""The demo as a user runs it: ``tradingbot demo`` as a process, against the real broker.

Its summary must equal what the ``portfolio.events`` log says when the test
reads it back from the broker and counts for itself.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from core.events import (
    AccountMarked,
    DecisionRecorded,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
)
from services.kafka import read_run
from streams.topics import PORTFOLIO_EVENTS

SYMBOLS, STEPS = 12, 30


@pytest.fixture(scope="module")
def demo_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("demo")
    summary_path = out / "summary.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "services.cli", "demo",
            "--bootstrap", kafka_bootstrap,
            "--symbols", str(SYMBOLS), "--steps", str(STEPS), "--start", "40",
            "--no-progress", "--json", str(summary_path), "--runs-dir", str(out / "runs"),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(summary_path.read_text())
    assert isinstance(summary, dict)
    summary["_stdout"] = result.stdout
    return summary


def test_demo_summary_equals_a_fold_of_the_portfolio_log(
    demo_run: dict[str, object], kafka_bootstrap: str
) -> None:
    run_id = str(demo_run["run_id"])
    events = asyncio.run(read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, run_id))

    opened = [e for e in events if isinstance(e, PortfolioOpened)]
    marks = [e for e in events if isinstance(e, AccountMarked)]
    fills = [e for e in events if isinstance(e, OrderFilled)]
    skips = Counter(e.reason for e in events if isinstance(e, OrderSkipped))
    decisions = [e for e in events if isinstance(e, DecisionRecorded)]
    closed = [e for e in events if isinstance(e, PortfolioClosed)]

    assert len(opened) == 1 and len(closed) == 1
    assert demo_run["symbols"] == SYMBOLS == len(opened[0].symbols)
    assert demo_run["steps"] == STEPS == len(marks)
    assert demo_run["bars"] == sum(m.bars for m in marks) == SYMBOLS * STEPS
    assert demo_run["actions"] == len(decisions) == SYMBOLS * STEPS
    assert demo_run["trades"] == len(fills)
    assert demo_run["buys"] == sum(f.side == "buy" for f in fills)
    assert demo_run["sells"] == sum(f.side == "sell" for f in fills)
    assert demo_run["skipped"] == dict(skips)
    assert demo_run["fees"] == pytest.approx(sum(f.fee for f in fills))
    assert demo_run["final_equity"] == pytest.approx(marks[-1].equity)
    assert demo_run["final_equity"] == pytest.approx(closed[0].final_equity)
    assert demo_run["total_return"] == pytest.approx(marks[-1].equity / 100_000.0 - 1)
    curve = [100_000.0] + [m.equity for m in marks]
    peak, worst = curve[0], 0.0
    for value in curve:
        peak = max(peak, value)
        worst = max(worst, (peak - value) / peak)
    assert demo_run["max_drawdown"] == pytest.approx(worst)
    mix = demo_run["action_mix"]
    assert isinstance(mix, dict)
    for symbol in opened[0].symbols:
        kinds = Counter(d.kind for d in decisions if d.symbol == symbol)
        assert mix[symbol] == {"buy": kinds["buy"], "sell": kinds["sell"], "hold": kinds["hold"]}
    assert demo_run["complete"] is True


def test_demo_prints_the_summary_it_wrote(demo_run: dict[str, object]) -> None:
    stdout = str(demo_run["_stdout"])
    assert f"Run {demo_run['run_id']}" in stdout
    assert f"${demo_run['final_equity']:,.2f}" in stdout


def test_demo_stops_every_service_process_it_started(demo_run: dict[str, object]) -> None:
    assert demo_run["complete"] is True
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    modules = (
        "services.market_replay",
        "services.symbol_agent",
        "services.portfolio_manager",
        "services.timescale_sink",
    )
    assert not [line for line in ps.splitlines() if any(m in line for m in modules)], ps


def test_demo_projects_its_run_into_timescaledb_and_says_how_to_connect(
    demo_run: dict[str, object],
) -> None:
    database = demo_run["database"]
    assert isinstance(database, dict)
    rows = database["rows"]

    assert rows["bars"] == rows["actions"] == rows["decisions"] == SYMBOLS * STEPS
    assert rows["fills"] == rows["rl_trades"] == demo_run["trades"]
    assert rows["marks"] == STEPS and rows["runs"] == 1
    assert f"connect: psql {database['url']}" in str(demo_run["_stdout"])


def test_demo_with_an_unknown_dataset_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--bootstrap", "127.0.0.1:1",
         "--dataset", str(tmp_path / "nope.csv"), "--no-progress"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "nope.csv" in result.stderr
