"""TimescaleDB sink benchmark: ``python -m benchmarks.timescale_sink``; prints a table.

On a Kafka and a TimescaleDB of its own (deploy/local, free ports, temporary
data dirs), it replays the demo's data (143 symbols x 245 days) through the
lockstep pipeline once, then measures:

1. ``store, COPY + upsert``: the run's bars and actions written through
   ``ProjectionStore.write`` (binary COPY into staging tables, then INSERT ...
   ON CONFLICT DO NOTHING) in batches of ``--batch`` events, into a freshly
   migrated database; rows per second;
2. ``store, executemany baseline``: the same rows and batches with psycopg's
   ``executemany`` of one INSERT ... ON CONFLICT DO NOTHING per row (pipeline
   mode), the usual way to write rows; the ratio to it is what COPY gains;
3. ``store, redelivery``: the COPY path again over the same rows (it writes
   nothing new);
4. ``sink end to end``: the sink service from an empty consumer group over the
   whole log (bars, actions, ledger, clock) into a fresh database, from its
   start (connect, check the schema, assign) until its committed offsets
   reach the end; rows per second of every table (the refresh of the daily
   rollups runs beside it and is not waited for);
5. ``rebuild of the 245-day run``: ``tradingbot db rebuild``'s work (read the
   run's five topics, delete and write its rows in one transaction, refresh).

Each entry is the median of ``--repeat`` runs; the ratios compare runs of the
same invocation. The goal of issue 11 is 50,000 rows/s for bars and actions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry
from psycopg import sql

from core.events import ActionDecided, BarClosed, Event
from rl_agents.data import load_bars, universe
from services.config import KafkaConfig
from services.db import migrations
from services.db.config import DatabaseConfig
from services.db.rebuild import read_log, rebuild
from services.db.rows import ACTIONS, BARS, Batch, project
from services.db.store import ProjectionStore
from services.kafka import create_topics
from services.pipeline import run_lockstep
from services.ports import free_ports
from services.timescale_sink.app import GroupWatch, TimescaleSink
from services.timescale_sink.config import SinkConfig

REPO = Path(__file__).resolve().parents[1]
KAFKA = REPO / "deploy" / "local" / "kafka" / "kafka.sh"
TIMESCALEDB = REPO / "deploy" / "local" / "timescaledb" / "timescaledb.sh"
RUN_ID = "bench-timescale"
GOAL = 50_000


@dataclass
class Entry:
    """One line of the table."""

    name: str
    rows: int
    seconds: float
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        """Rows written (or offered) per second."""
        return self.rows / self.seconds if self.seconds else 0.0


def _free_port() -> int:
    return free_ports(1)[0]


@contextmanager
def _servers(workdir: str) -> Iterator[tuple[str, str]]:
    """A Kafka and a TimescaleDB of this benchmark: (bootstrap, database URL of the admin db)."""
    kafka_port, db_port = _free_port(), _free_port()
    kafka_env = {
        **os.environ,
        "KAFKA_PORT": str(kafka_port),
        "KAFKA_CONTROLLER_PORT": str(_free_port()),
        "KAFKA_DATA_DIR": f"{workdir}/kafka",
        "KAFKA_FRESH": "1",
    }
    db_env = {
        **os.environ,
        "TIMESCALEDB_PORT": str(db_port),
        "TIMESCALEDB_DATA_DIR": f"{workdir}/timescaledb",
        "TIMESCALEDB_FRESH": "1",
    }
    try:
        subprocess.run(
            ["bash", str(KAFKA), "start"], env=kafka_env, check=True, capture_output=True
        )
        subprocess.run(
            ["bash", str(TIMESCALEDB), "start"], env=db_env, check=True, capture_output=True
        )
        yield (
            f"127.0.0.1:{kafka_port}",
            f"postgresql://tradingbot:tradingbot@127.0.0.1:{db_port}/tradingbot",
        )
    finally:
        subprocess.run(["bash", str(TIMESCALEDB), "stop"], env=db_env, capture_output=True)
        subprocess.run(["bash", str(KAFKA), "stop"], env=kafka_env, capture_output=True)


def _fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    migrations.migrate(url)
    return url


def _batches(events: list[Event], size: int) -> list[Batch]:
    return [project(events[i : i + size]) for i in range(0, len(events), size)]


async def _copy_path(url: str, batches: list[Batch]) -> tuple[int, float]:
    store = await ProjectionStore.open(DatabaseConfig(url=url))
    try:
        began = time.perf_counter()
        offered = 0
        for batch in batches:
            await store.write(batch)
            offered += len(batch)
        return offered, time.perf_counter() - began
    finally:
        await store.close()


def _executemany_path(url: str, batches: list[Batch]) -> tuple[int, float]:
    inserts = {
        t.name: sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
            sql.Identifier(t.name),
            sql.SQL(", ").join(sql.Identifier(c) for c in t.columns),
            sql.SQL(", ").join(sql.Placeholder() for _ in t.columns),
        )
        for t in (BARS, ACTIONS)
    }
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        offered = 0
        for batch in batches:
            with conn.transaction(), conn.cursor() as cursor:
                for name, insert in inserts.items():
                    rows = batch.rows[name]
                    if rows:
                        cursor.executemany(insert, rows)
                        offered += len(rows)
        return offered, time.perf_counter() - began


async def _sink(bootstrap: str, url: str, group: str) -> tuple[int, float]:
    sink = TimescaleSink(
        KafkaConfig(bootstrap=bootstrap),
        DatabaseConfig(url=url),
        SinkConfig(group_id=group, metrics_port=0),
        CollectorRegistry(),
    )
    async with GroupWatch(bootstrap, group) as watch:
        began = time.perf_counter()
        task = asyncio.ensure_future(sink.serve())
        try:
            while not await watch.caught_up():
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
            seconds = time.perf_counter() - began
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    written = sum(
        s.value for m in sink.metrics.rows.collect() for s in m.samples if s.name.endswith("_total")
    )
    return int(written), seconds


async def _rebuild(bootstrap: str, url: str) -> tuple[int, float, str]:
    store = await ProjectionStore.open(DatabaseConfig(url=url))
    try:
        began = time.perf_counter()
        report = await rebuild(store, bootstrap, RUN_ID)
        seconds = time.perf_counter() - began
    finally:
        await store.close()
    rows = sum(report.written.values())
    return rows, seconds, f"read {report.read_s:.1f}s, write+refresh {report.write_s:.1f}s"


def _median(samples: list[tuple[int, float]]) -> tuple[int, float]:
    return samples[0][0], statistics.median(s for _, s in samples)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=143)
    parser.add_argument("--steps", type=int, default=None, help="days (all 245)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10_000, help="events per transaction")
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks" / "results" / "timescale_sink.json"
    )
    args = parser.parse_args()
    frame = universe(load_bars("bytetheory"), args.symbols, steps=args.steps)
    entries: list[Entry] = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-timescale-") as workdir:
        with _servers(workdir) as (bootstrap, admin):
            asyncio.run(create_topics(bootstrap))
            _, replay_s = asyncio.run(run_lockstep(bootstrap=bootstrap, run_id=RUN_ID, frame=frame))
            events = asyncio.run(read_log(bootstrap, RUN_ID))
            market: list[Event] = [e for e in events if isinstance(e, BarClosed | ActionDecided)]
            batches = _batches(market, args.batch)

            def repeat(fn: Callable[[int], tuple[int, float]]) -> tuple[int, float]:
                return _median([fn(i) for i in range(args.repeat)])

            def copy_once(i: int) -> tuple[int, float]:
                return asyncio.run(_copy_path(_fresh_database(admin, f"bench_copy_{i}"), batches))

            def executemany_once(i: int) -> tuple[int, float]:
                return _executemany_path(_fresh_database(admin, f"bench_many_{i}"), batches)

            def redelivery_once(i: int) -> tuple[int, float]:
                return asyncio.run(_copy_path(admin.rsplit("/", 1)[0] + "/bench_copy_0", batches))

            def sink_once(i: int) -> tuple[int, float]:
                url = _fresh_database(admin, f"bench_sink_{i}")
                return asyncio.run(_sink(bootstrap, url, f"bench-sink-{i}"))

            copied = repeat(copy_once)
            many = repeat(executemany_once)
            again = repeat(redelivery_once)
            sunk = repeat(sink_once)
            sunk_url = admin.rsplit("/", 1)[0] + "/bench_sink_0"
            rebuilt = [asyncio.run(_rebuild(bootstrap, sunk_url)) for _ in range(args.repeat)]
            rebuild_s = statistics.median(r[1] for r in rebuilt)
            entries = [
                Entry("store, COPY + upsert (bars, actions)", *copied, "fresh database"),
                Entry("store, executemany baseline", *many, "same rows, same batches"),
                Entry("store, redelivery (COPY path again)", *again, "writes nothing new"),
                Entry("sink end to end (all topics)", *sunk, "empty group to caught up"),
                Entry(
                    f"rebuild of the {frame.n_steps}-day run",
                    rebuilt[0][0],
                    rebuild_s,
                    rebuilt[len(rebuilt) // 2][2],
                ),
            ]
    _print(entries, frame.n_symbols, frame.n_steps, replay_s, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "command": " ".join(["python", "-m", "benchmarks.timescale_sink", *sys.argv[1:]]),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "symbols": frame.n_symbols,
                "steps": frame.n_steps,
                "entries": [asdict(e) | {"rows_per_s": e.rows_per_s} for e in entries],
            },
            indent=2,
        )
    )


def _print(
    entries: list[Entry], symbols: int, steps: int, replay_s: float, args: argparse.Namespace
) -> None:
    base = entries[1]
    print(
        f"\nbenchmarks/timescale_sink.py --repeat {args.repeat} --batch {args.batch}"
        f"  ({symbols} symbols x {steps} days, {platform.machine()}, {os.cpu_count()} cpus;"
        f" medians of {args.repeat}; the lockstep replay that made the log took {replay_s:.1f}s)\n"
    )
    header = f"{'entry':<40}{'rows':>9}{'seconds':>9}{'rows/s':>10}{'x executemany':>15}  note"
    print(header)
    print("-" * len(header))
    for e in entries:
        ratio = f"{e.rows_per_s / base.rows_per_s:.2f}" if e is not entries[-1] else ""
        print(f"{e.name:<40}{e.rows:>9}{e.seconds:>9.2f}{e.rows_per_s:>10.0f}{ratio:>15}  {e.note}")
    copy = entries[0].rows_per_s
    print(f"\ngoal: {GOAL:,} rows/s for bars and actions: {'met' if copy >= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
