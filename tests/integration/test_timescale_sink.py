"""The TimescaleDB sink on real Kafka and TimescaleDB: idempotent, rebuildable, hard to kill.

One run of ten real symbols over twenty days goes through the pipeline while
a sink projects it live (the module's fixture). The tests then project the
same log again from the beginning (nothing new is written), rebuild the run
from the log (the same rows), feed the sink bad records (they go to the
dead-letter topics, the sink goes on), kill the sink process with SIGKILL and
start it again, and restart PostgreSQL under a sink that is writing: each
time the run's rows equal the live ones exactly.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from conftest import TimescaleServer
from timescale_support import (
    counts,
    metric,
    new_sink,
    project_log,
    project_run,
    sink_until_caught_up,
    snapshot,
    start_sink_process,
    wait_until,
)

from core.events import BarClosed, CollapseDetected, event_id
from rl_agents.data import load_bars, universe
from services import kafka
from services.db.config import DatabaseConfig
from services.db.rebuild import RebuildRefused, read_log, rebuild
from services.db.rows import project
from services.db.store import ProjectionStore
from services.timescale_sink.app import caught_up
from streams.codec import CODEC, DeadLettered
from streams.topics import MARKET_BARS, MONITOR_ALERTS

pytestmark = pytest.mark.integration

FRAME = universe(load_bars("bytetheory"), 10, start=60, steps=20)


@dataclass(frozen=True)
class Projected:
    """The module's run, projected live by a sink into its own database."""

    run_id: str
    url: str
    group: str
    bootstrap: str


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, timescaledb: TimescaleServer) -> Projected:
    run_id = f"ts-sink-{time.time_ns()}"
    url = timescaledb.create_database("sink_live")
    group = f"{run_id}-live"
    project_run(kafka_bootstrap, url, run_id, FRAME, group)
    return Projected(run_id, url, group, kafka_bootstrap)


def store_for(url: str) -> ProjectionStore:
    return asyncio.run(ProjectionStore.open(DatabaseConfig(url=url)))


def test_live_rows_are_the_projection_of_the_runs_events(live: Projected) -> None:
    events = asyncio.run(read_log(live.bootstrap, live.run_id))
    expected = project(events)

    found = counts(live.url, live.run_id)

    for table, rows in expected.rows.items():
        assert found[table] == len(rows), table
    assert found["bars"] == found["actions"] == 10 * 20
    assert found["runs"] == 1 and found["rl_trades"] == found["fills"] > 0
    assert found["run_models"] == 1


def test_projecting_the_log_again_from_the_start_writes_nothing(
    live: Projected, timescaledb: TimescaleServer
) -> None:
    before = snapshot(live.url, live.run_id, xmin=True)

    again = project_log(live.bootstrap, live.url, f"{live.run_id}-again")

    assert snapshot(live.url, live.run_id, xmin=True) == before  # not even rewritten in place
    written = [
        s for m in again.metrics.rows.collect() for s in m.samples if s.name.endswith("_total")
    ]
    assert sum(s.value for s in written) == 0
    assert metric(again, "tradingbot_sink_redelivered_rows_total", table="bars") >= 200


def test_rebuild_of_a_run_gives_back_exactly_the_live_rows(live: Projected) -> None:
    before = snapshot(live.url, live.run_id)

    async def go() -> None:
        store = await ProjectionStore.open(DatabaseConfig(url=live.url))
        try:
            report = await rebuild(store, live.bootstrap, live.run_id)
        finally:
            await store.close()
        assert report.deleted == {t: len(rows) for t, rows in before.items()}
        assert {t: n for t, n in report.written.items() if n} == {
            t: len(rows) for t, rows in before.items() if rows
        }

    asyncio.run(go())

    assert snapshot(live.url, live.run_id) == before


def test_rebuild_refuses_when_the_log_has_fewer_rows_than_the_database(live: Projected) -> None:
    with psycopg.connect(live.url) as conn:
        conn.execute(
            "INSERT INTO bars SELECT event_id || '/expired', run_id, symbol, step,"
            " event_time, open, high, low, close, volume FROM bars WHERE run_id = %s LIMIT 1",
            (live.run_id,),
        )
    before = snapshot(live.url, live.run_id)

    async def go(force: bool) -> None:
        store = await ProjectionStore.open(DatabaseConfig(url=live.url))
        try:
            await rebuild(store, live.bootstrap, live.run_id, force=force)
        finally:
            await store.close()

    with pytest.raises(RebuildRefused, match="bars 200 of 201"):
        asyncio.run(go(force=False))
    assert snapshot(live.url, live.run_id) == before  # nothing changed

    asyncio.run(go(force=True))
    assert counts(live.url, live.run_id)["bars"] == 200


def _bad_bar(run_id: str) -> BarClosed:
    """A bar that decodes but that the database refuses (its low is above its high)."""
    return BarClosed(
        event_id=event_id(run_id, 0, "bar", "BAD"),
        cause_id=run_id,
        run_id=run_id,
        event_time=FRAME.timestamps[0].item(),
        symbol="BAD",
        step=0,
        steps_total=1,
        step_bars=1,
        open=10.0,
        high=9.0,
        low=11.0,
        close=10.0,
        volume=1.0,
    )


def _alert(run_id: str) -> CollapseDetected:
    return CollapseDetected(
        event_id=f"{run_id}/alert/after-the-bad-records",
        cause_id=run_id,
        run_id=run_id,
        event_time=FRAME.timestamps[1].item(),
        agent="AAPL",
        metric="dominance",
        severity="warning",
        value=0.9,
        threshold=0.6,
        window="100 actions",
        actions=100,
    )


def test_bad_records_go_to_the_dead_letter_topic_and_the_sink_goes_on(
    live: Projected, timescaledb: TimescaleServer
) -> None:
    run_id = f"{live.run_id}-bad"
    url = timescaledb.create_database("sink_bad")

    async def go() -> list[DeadLettered]:
        producer = kafka.producer(live.bootstrap, "test-bad-records")
        await kafka.start(producer, live.bootstrap)
        try:
            garbage = await (await producer.send(MARKET_BARS.name, b"\xffnot an event", key=b"X"))
            refused = await (
                await producer.send(MARKET_BARS.name, CODEC.encode(_bad_bar(run_id)), key=b"BAD")
            )
            await kafka.publish(producer, MONITOR_ALERTS.name, "AAPL", [_alert(run_id)])
        finally:
            await producer.stop()
        await sink_until_caught_up(new_sink(live.bootstrap, url, f"{run_id}-group"))
        letters = await kafka.read_topic(
            live.bootstrap,
            MARKET_BARS.dlq,
            keep=lambda e: isinstance(e, DeadLettered) and e.service == "timescale-sink",
        )
        wanted = {(garbage.partition, garbage.offset), (refused.partition, refused.offset)}
        return [
            e for e in letters if isinstance(e, DeadLettered) and (e.partition, e.offset) in wanted
        ]

    letters = asyncio.run(go())

    reasons = sorted(letter.reason for letter in letters)
    assert len(reasons) == 2, reasons
    assert "not an event envelope" in reasons[0]
    assert "database refused" in reasons[1] and "bars_prices" in reasons[1]
    found = counts(url, run_id)
    assert found["bars"] == 0 and found["collapse_alerts"] == 1  # and the sink went on
    assert counts(url, live.run_id) == counts(live.url, live.run_id)


def test_sink_killed_with_sigkill_and_started_again_writes_every_row_once(
    live: Projected, timescaledb: TimescaleServer, tmp_path: Path
) -> None:
    url = timescaledb.create_database("sink_killed")
    group = f"{live.run_id}-killed"
    log = tmp_path / "sink.log"
    small = {"TRADINGBOT_SINK_BATCH_RECORDS": "25", "TRADINGBOT_SINK_LINGER_MS": "0"}
    process = start_sink_process(live.bootstrap, url, group, log, **small)
    try:

        def some_rows() -> bool:
            try:
                return 0 < sum(counts(url, live.run_id).values())
            except psycopg.Error:
                return False  # the schema is not there yet

        deadline = time.monotonic() + 60
        while not some_rows():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        partial = counts(url, live.run_id)
        assert partial != counts(live.url, live.run_id), "killed too late to test anything"

        process = start_sink_process(live.bootstrap, url, group, log)

        async def done() -> bool:
            assert process.poll() is None, log.read_text()
            return await caught_up(live.bootstrap, group)

        asyncio.run(wait_until(done, "the restarted sink to catch up"))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)

    assert snapshot(url, live.run_id) == snapshot(live.url, live.run_id)


def test_postgresql_restarted_mid_stream_loses_and_doubles_nothing(
    live: Projected, timescaledb: TimescaleServer
) -> None:
    url = timescaledb.create_database("sink_restarted")
    group = f"{live.run_id}-pg-restart"
    # One-second connection attempts: the pool gives up on the stopped server, the sink retries.
    fast = {"connect_timeout_s": 1.0}
    sink = new_sink(
        live.bootstrap, url, group, database=fast, settings={"batch_records": 25, "linger_ms": 0}
    )
    at_stop: dict[str, int] = {}

    async def restart_when_writing() -> None:
        async def writing() -> bool:
            try:
                at_stop.update(counts(url, live.run_id))
            except psycopg.Error:
                return False
            return sum(at_stop.values()) > 0

        await wait_until(writing, "the sink's first rows")
        await asyncio.to_thread(timescaledb.stop)
        await asyncio.sleep(4.0)  # the sink retries against a server that is gone
        await asyncio.to_thread(timescaledb.start)

    asyncio.run(sink_until_caught_up(sink, during=restart_when_writing()))

    assert at_stop != counts(live.url, live.run_id), "restarted too late to test anything"
    assert metric(sink, "tradingbot_sink_database_retries_total") > 0
    assert snapshot(url, live.run_id) == snapshot(live.url, live.run_id)
