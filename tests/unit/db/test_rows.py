"""Events to rows: each event's rows, keyed by its id; what the projection does not keep."""

from __future__ import annotations

from datetime import UTC, datetime

from core.events import (
    AccountMarked,
    ActionDecided,
    BarClosed,
    CollapseResolved,
    Holding,
    OrderFilled,
    PortfolioClosed,
    ReplayStarted,
    ServiceReady,
    StepCompleted,
)
from services.db.rows import TABLES, project, timestamp

T = 1_251_000_000_000_000_000  # 2009-08-23 04:00 UTC


def bar(step: int = 0, symbol: str = "AA") -> BarClosed:
    return BarClosed(
        event_id=f"r/{step}/bar/{symbol}", cause_id="r", run_id="r", event_time=T, symbol=symbol,
        step=step, steps_total=2, step_bars=1, open=1.0, high=2.0, low=0.5, close=1.5, volume=9.0,
    )  # fmt: skip


def test_every_tables_rows_have_one_value_per_column() -> None:
    marked = AccountMarked(
        event_id="r/0/marked", cause_id="r/0/bars", run_id="r", event_time=T, step=0, bars=1,
        cash=90.0, equity=100.0,
        holdings=(Holding(symbol="AA", quantity=2.0, cost=9.0, avg_cost=4.5, close=5.0,
                          unrealized_pnl=1.0),),
    )  # fmt: skip
    fill = OrderFilled(
        event_id="r/1/fill/AA", cause_id="r/0/decision/AA", run_id="r", event_time=T, symbol="AA",
        step=1, side="buy", quantity=2.0, price=4.4, notional=8.8, fee=0.2,
        requested_quantity=3.0, clipped_by=("position_cap",),
    )  # fmt: skip
    batch = project([bar(), marked, fill])

    for table in TABLES:
        for row in batch.rows[table.name]:
            assert len(row) == len(table.columns) == len(table.types), table.name
    assert batch.rows["holdings"] == [
        ("r/0/marked", "r", "AA", "AA", 0, timestamp(T), 2.0, 9.0, 4.5, 5.0, 10.0, 1.0)
    ]
    assert batch.rows["fills"][0][-1] == ["position_cap"]


def test_an_actions_agent_is_its_symbol() -> None:
    action = ActionDecided(
        event_id="r/0/action/AA", cause_id="r/0/bar/AA", run_id="r", event_time=T, symbol="AA",
        step=0, raw=0.5, smoothed=0.25, policy="momentum", policy_version="v1",
    )  # fmt: skip

    [row] = project([action]).rows["actions"]

    assert row[3:5] == ("AA", "AA")


def test_run_events_merge_into_one_patch_per_run() -> None:
    started = ReplayStarted(
        event_id="r/-1/replay-started", cause_id="r", run_id="r", event_time=T,
        symbols=("AA", "AB"), steps_total=2, dataset="bytetheory", mode="lockstep",
    )  # fmt: skip
    closed = PortfolioClosed(
        event_id="r/1/closed", cause_id="r/end", run_id="r", event_time=T, steps=2,
        final_equity=101.0,
    )  # fmt: skip

    batch = project([started, closed])

    assert batch.runs == {
        "r": {
            "dataset": "bytetheory", "mode": "lockstep", "symbols": ["AA", "AB"],
            "steps_total": 2, "started_at": timestamp(T), "closed_at": timestamp(T),
            "steps": 2, "final_equity": 101.0,
        }
    }  # fmt: skip


def test_events_the_projection_does_not_keep_give_no_rows() -> None:
    ready = ServiceReady(event_id="r/ready/x", cause_id="r", run_id="r", event_time=0, service="x")
    done = StepCompleted(event_id="r/0/completed", cause_id="r", run_id="r", event_time=T, step=0)

    batch = project([ready, done, "not an event"])

    assert len(batch) == 0 and batch.events == 0


def test_alerts_keep_their_state() -> None:
    resolved = CollapseResolved(
        event_id="r/5/action/AA/resolved/entropy", cause_id="r/5/action/AA", run_id="r",
        event_time=T, agent="AA", metric="entropy", severity="warning", value=0.5,
        threshold=0.3, window="last 100 actions", actions=100,
    )  # fmt: skip

    [row] = project([resolved]).rows["collapse_alerts"]

    assert row[5] == "resolved" and row[3] == "AA"


def test_nanoseconds_become_utc_microseconds() -> None:
    assert timestamp(T + 1_999) == datetime(2009, 8, 23, 4, 0, 0, 1, tzinfo=UTC)
