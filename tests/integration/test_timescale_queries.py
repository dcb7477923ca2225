"""The queries of docs/queries.md give the numbers of the ledger's own fold, on every path.

A run of twelve real symbols over thirty days goes through the pipeline,
and a few collapse alerts of that run go on ``monitor.alerts``. A sink
projects the log into a database on the TimescaleDB (Apache edition) path
and into one on the plain PostgreSQL path; on each, every query of
``services.db.queries`` is compared with what ``core.report.summarize`` and
``core.ledger.fold`` compute from the run's ``portfolio.events``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from conftest import TimescaleServer
from timescale_support import REPO, project_log

from core.events import (
    AccountMarked,
    CollapseDetected,
    CollapseResolved,
    DecisionRecorded,
    Event,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
)
from core.ledger import fold
from core.performance import step_returns
from core.report import RunSummary, summarize
from rl_agents.data import load_bars, universe
from services import kafka
from services.db import migrations, queries
from services.db.rebuild import read_log
from services.pipeline import run_lockstep
from streams.topics import MONITOR_ALERTS

pytestmark = pytest.mark.integration

FRAME = universe(load_bars("bytetheory"), 12, start=120, steps=30)
LEDGER = (
    PortfolioOpened,
    DecisionRecorded,
    OrderFilled,
    OrderSkipped,
    AccountMarked,
    PortfolioClosed,
)


@dataclass(frozen=True)
class Run:
    """The module's run: its ledger, its summary and the alerts sent for it."""

    run_id: str
    ledger: list[Event]
    summary: RunSummary
    alerts: list[CollapseDetected | CollapseResolved]


def _day(ns: int) -> date:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).date()


def _alerts(run_id: str) -> list[CollapseDetected | CollapseResolved]:
    t = [int(x) for x in FRAME.timestamps]

    def detected(agent: str, metric: str, at: int, severity: str) -> CollapseDetected:
        return CollapseDetected(
            event_id=f"{run_id}/{at}/action/{agent}/collapse/{metric}/{severity}",
            cause_id=f"{run_id}/{at}/action/{agent}",
            event_time=t[at],
            agent=agent,
            metric=metric,
            severity=severity,
            value=0.9,
            threshold=0.6,
            window="last 100 actions",
            actions=at + 1,
            run_id=run_id,
        )

    def resolved(agent: str, metric: str, at: int, severity: str) -> CollapseResolved:
        return CollapseResolved(
            event_id=f"{run_id}/{at}/action/{agent}/resolved/{metric}",
            cause_id=f"{run_id}/{at}/action/{agent}",
            event_time=t[at],
            agent=agent,
            metric=metric,
            severity=severity,
            value=0.3,
            threshold=0.6,
            window="last 100 actions",
            actions=at + 1,
            run_id=run_id,
        )

    a, b = FRAME.symbols[0], FRAME.symbols[1]
    return [
        detected(a, "dominance", 3, "warning"),
        resolved(a, "dominance", 8, "warning"),
        detected(a, "dominance", 12, "warning"),
        resolved(a, "dominance", 20, "warning"),
        detected(b, "entropy", 5, "critical"),
    ]


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str) -> Run:
    run_id = f"ts-queries-{time.time_ns()}"
    alerts = _alerts(run_id)

    async def go() -> list[Event]:
        await run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=FRAME)
        producer = kafka.producer(kafka_bootstrap, "test-alerts")
        await kafka.start(producer, kafka_bootstrap)
        try:
            await kafka.publish_keyed(producer, MONITOR_ALERTS.name, [(e.agent, e) for e in alerts])
        finally:
            await producer.stop()
        return await read_log(kafka_bootstrap, run_id)

    events = asyncio.run(go())
    ledger: list[Event] = [e for e in events if isinstance(e, LEDGER)]
    return Run(run_id, ledger, summarize(ledger), alerts)


@pytest.fixture(scope="module", params=["timescaledb-apache", "postgresql"])
def url(
    request: pytest.FixtureRequest, run: Run, kafka_bootstrap: str, timescaledb: TimescaleServer
) -> str:
    path = request.param
    url = timescaledb.create_database(f"queries_{path.replace('-', '_')}")
    assert migrations.migrate(url, timescaledb=path != "postgresql").path == path
    project_log(kafka_bootstrap, url, f"{run.run_id}-{path}")
    return url


def ask(url: str, name: str, run_id: str, **params: object) -> list[dict[str, object]]:
    with psycopg.connect(url) as conn:
        columns, rows = queries.run(conn, queries.QUERIES[name], run_id=run_id, **params)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def per_symbol(run: Run) -> dict[str, dict[str, float]]:
    """Each symbol's trades, fees and P&L from the ledger's own fold of its events."""
    opened = next(e for e in run.ledger if isinstance(e, PortfolioOpened))
    last = [e for e in run.ledger if isinstance(e, AccountMarked)][-1]
    held = {h.symbol: h for h in last.holdings}
    found: dict[str, dict[str, float]] = {}
    for symbol in opened.symbols:
        own = [e for e in run.ledger if getattr(e, "symbol", None) == symbol]
        state = fold([opened, *own])
        fills = [e for e in own if isinstance(e, OrderFilled)]
        if not fills:
            continue
        unrealized = held[symbol].unrealized_pnl if symbol in held else 0.0
        found[symbol] = {
            "trades": state.fills,
            "buys": sum(f.side == "buy" for f in fills),
            "sells": sum(f.side == "sell" for f in fills),
            "fees": state.fees,
            "realized_pnl": state.realized_pnl,
            "unrealized_pnl": unrealized,
            "total_pnl": state.realized_pnl + unrealized,
            "quantity": state.quantity(symbol),
        }
    return found


def test_runs_query_gives_the_runs_result_and_models(run: Run, url: str) -> None:
    [row] = [r for r in ask(url, "runs", run.run_id) if r["run_id"] == run.run_id]

    assert row["symbols"] == run.summary.symbols == 12
    assert row["steps"] == run.summary.steps == 30
    assert row["trades"] == run.summary.trades
    assert row["final_equity"] == pytest.approx(run.summary.final_equity, abs=1e-9)
    assert row["total_return"] == pytest.approx(run.summary.total_return, abs=1e-12)
    assert str(row["models"]).startswith("momentum ")
    assert row["dataset"] == FRAME.source and row["mode"] == "lockstep"


def test_equity_curve_and_drawdown_equal_the_fold(run: Run, url: str) -> None:
    rows = ask(url, "equity_curve", run.run_id)

    marks = [e for e in run.ledger if isinstance(e, AccountMarked)]
    assert [r["step"] for r in rows] == [m.step for m in marks]
    assert [r["equity"] for r in rows] == [m.equity for m in marks]
    assert [r["cash"] for r in rows] == [m.cash for m in marks]
    drawdown = max([0.0] + [float(str(r["drawdown"])) for r in rows])
    assert drawdown == pytest.approx(run.summary.max_drawdown, abs=1e-12)


def test_pnl_and_trades_by_symbol_equal_the_fold_of_each_symbol(run: Run, url: str) -> None:
    rows = {str(r["symbol"]): r for r in ask(url, "pnl_by_symbol", run.run_id)}

    expected = per_symbol(run)
    assert set(rows) == set(expected)
    for symbol, want in expected.items():
        got = rows[symbol]
        assert got["agent"] == symbol
        for key in ("trades", "buys", "sells"):
            assert got[key] == want[key], (symbol, key)
        for key in ("fees", "realized_pnl", "unrealized_pnl", "total_pnl", "quantity"):
            assert got[key] == pytest.approx(want[key], abs=1e-6), (symbol, key)
    assert sum(int(str(r["trades"])) for r in rows.values()) == run.summary.trades
    assert sum(float(str(r["fees"])) for r in rows.values()) == pytest.approx(run.summary.fees)
    realized = sum(float(str(r["realized_pnl"])) for r in rows.values())
    assert realized == pytest.approx(fold(run.ledger).realized_pnl, abs=1e-6)


def test_action_mix_per_agent_per_day_counts_the_ledgers_decisions(run: Run, url: str) -> None:
    rows = ask(url, "action_mix", run.run_id)

    decisions = [e for e in run.ledger if isinstance(e, DecisionRecorded)]
    by_day = Counter((d.symbol, _day(d.event_time), d.kind) for d in decisions)
    got: Counter[tuple[str, date, str]] = Counter()
    for r in rows:
        day = r["day"]
        assert isinstance(day, datetime)
        for kind in ("buy", "sell", "hold"):
            if n := int(str(r[f"{kind}_actions"])):
                got[(str(r["agent"]), day.date(), kind)] = n
    assert got == by_day
    for symbol, mix in run.summary.action_mix.items():
        mine = [r for r in rows if r["agent"] == symbol]
        assert sum(int(str(r["buy_actions"])) for r in mine) == mix.buy
        assert sum(int(str(r["sell_actions"])) for r in mine) == mix.sell
        assert sum(int(str(r["hold_actions"])) for r in mine) == mix.hold


def test_action_histogram_holds_every_action_of_each_agent(run: Run, url: str) -> None:
    rows = ask(url, "action_histogram", run.run_id)

    per_agent = Counter[str]()
    for r in rows:
        assert -1.0 <= float(str(r["bin_low"])) < 1.0
        per_agent[str(r["agent"])] += int(str(r["actions"]))
    assert per_agent == {s: m.total for s, m in run.summary.action_mix.items()}


def test_daily_pnl_of_each_agent_adds_up_to_its_total_pnl(run: Run, url: str) -> None:
    rows = ask(url, "daily_pnl", run.run_id)

    total: dict[str, float] = {}
    for r in rows:
        total[str(r["agent"])] = total.get(str(r["agent"]), 0.0) + float(str(r["pnl"]))
    for symbol, want in per_symbol(run).items():
        assert total[symbol] == pytest.approx(want["total_pnl"], abs=1e-6), symbol


def test_worst_days_are_the_lowest_returns_of_the_equity_curve(run: Run, url: str) -> None:
    rows = ask(url, "worst_days", run.run_id, limit=5)

    marks = [e for e in run.ledger if isinstance(e, AccountMarked)]
    returns = step_returns([run.summary.initial_equity] + [m.equity for m in marks])
    worst = sorted(zip(returns.tolist(), [m.step for m in marks], strict=True))[:5]
    assert [r["step"] for r in rows] == [step for _, step in worst]
    assert [r["day_return"] for r in rows] == pytest.approx([r for r, _ in worst], abs=1e-15)


def test_alerts_come_with_when_they_cleared_and_how_long_they_stayed(run: Run, url: str) -> None:
    rows = ask(url, "alerts", run.run_id)

    t = [int(x) for x in FRAME.timestamps]

    def at(i: int) -> datetime:
        return datetime.fromtimestamp(t[i] // 1_000_000_000, UTC)

    a, b = FRAME.symbols[0], FRAME.symbols[1]
    assert [
        (r["agent"], r["metric"], r["severity"], r["opened_at"], r["resolved_at"], r["duration"])
        for r in rows
    ] == [
        (a, "dominance", "warning", at(3), at(8), at(8) - at(3)),
        (a, "dominance", "warning", at(12), at(20), at(20) - at(12)),
        (b, "entropy", "critical", at(5), None, None),
    ]
    assert all(isinstance(r["duration"], timedelta | None) for r in rows)


def test_every_grafana_panel_query_runs_and_shows_the_run(run: Run, url: str) -> None:
    board = json.loads((REPO / "grafana" / "dashboards" / "tradingbot-projection.json").read_text())
    agent = FRAME.symbols[0]
    values = {"run_id": run.run_id, "agent": agent}
    with psycopg.connect(url) as conn:
        for variable in board["templating"]["list"]:
            found = conn.execute(substitute(variable["query"], values).encode()).fetchall()
            assert found, variable["name"]
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                rows = conn.execute(substitute(target["rawSql"], values).encode()).fetchall()
                assert rows, panel["title"]


def substitute(sql: str, values: dict[str, str]) -> str:
    """Grafana's interpolation of ``${name}`` for the two variables of the dashboard."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m[1]], sql)
