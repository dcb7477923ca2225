"""Helpers of the TimescaleDB tests: a run through the pipeline, a sink that catches up, snapshots.

Everything is real: the session's Kafka and TimescaleDB (tests/conftest.py),
the services of ``services.pipeline.run_lockstep`` and the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry

from core.bars import BarFrame
from services.config import KafkaConfig
from services.db.config import DatabaseConfig
from services.db.store import RUN_TABLES
from services.pipeline import run_lockstep
from services.timescale_sink.app import GroupWatch, TimescaleSink
from services.timescale_sink.config import SinkConfig

REPO = Path(__file__).resolve().parents[2]
ORDER = {
    "runs": "run_id",
    "run_models": "policy, policy_version",
    "holdings": "mark_id, symbol",
    "rl_trades": "trade_id",
}
"""How each table's rows are ordered in a snapshot (event_id where not listed)."""


def sink_config(group: str, **settings: object) -> SinkConfig:
    """Sink settings for a test: its own group, no /metrics port, a short refresh interval."""
    values: dict[str, object] = {"group_id": group, "metrics_port": 0, "refresh_interval_s": 0.5}
    return SinkConfig.model_validate(values | settings)


def new_sink(
    bootstrap: str,
    url: str,
    group: str,
    *,
    database: Mapping[str, object] | None = None,
    settings: Mapping[str, object] | None = None,
) -> TimescaleSink:
    """A sink for ``url`` with its own metrics registry."""
    return TimescaleSink(
        KafkaConfig(bootstrap=bootstrap),
        DatabaseConfig.model_validate({"url": url, **(database or {})}),
        sink_config(group, **(settings or {})),
        CollectorRegistry(),
    )


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 120.0
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


async def sink_until_caught_up(
    sink: TimescaleSink, timeout_s: float = 180.0, during: Awaitable[object] | None = None
) -> None:
    """Run ``sink`` (and ``during`` beside it) until its group has everything, then stop it.

    It stops once its rollups are refreshed too (the sink refreshes them in the background).
    """
    task = asyncio.ensure_future(sink.serve())
    try:
        if during is not None:
            await during
        async with GroupWatch(sink.config.bootstrap, sink.sink.group_id) as watch:

            async def done() -> bool:
                if task.done():
                    task.result()  # the sink failed: raise its error here
                return await watch.caught_up() and not sink.refresh_pending

            await wait_until(done, f"sink group {sink.sink.group_id} to catch up", timeout_s)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def project_run(bootstrap: str, url: str, run_id: str, frame: BarFrame, group: str) -> None:
    """Replay ``frame`` as run ``run_id`` with the sink projecting it live into ``url``."""

    async def go() -> None:
        sink = new_sink(bootstrap, url, group)
        await sink_until_caught_up(
            sink, during=run_lockstep(bootstrap=bootstrap, run_id=run_id, frame=frame)
        )

    asyncio.run(go())


def project_log(bootstrap: str, url: str, group: str) -> TimescaleSink:
    """Project the whole log into ``url`` with a new sink; return the sink (for its metrics)."""
    sink = new_sink(bootstrap, url, group)
    asyncio.run(sink_until_caught_up(sink))
    return sink


def snapshot(url: str, run_id: str, *, xmin: bool = False) -> dict[str, list[tuple[object, ...]]]:
    """Every row of ``run_id`` in every table, in a fixed order (with each row's xmin if asked)."""
    found: dict[str, list[tuple[object, ...]]] = {}
    with psycopg.connect(url) as conn:
        for table in RUN_TABLES:
            extra = ", xmin::text" if xmin else ""
            rows = conn.execute(
                f"SELECT *{extra} FROM {table} WHERE run_id = %s "
                f"ORDER BY {ORDER.get(table, 'event_id')}",
                (run_id,),
            ).fetchall()
            found[table] = [tuple(r) for r in rows]
    return found


def counts(url: str, run_id: str) -> dict[str, int]:
    """Rows of ``run_id`` per table."""
    return {table: len(rows) for table, rows in snapshot(url, run_id).items()}


def metric(sink: TimescaleSink, name: str, **labels: str) -> float:
    """A sample of the sink's registry (0 when absent)."""
    value = sink.service_metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


def start_sink_process(
    bootstrap: str, url: str, group: str, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    """``python -m services.timescale_sink`` as a process of its own, logging to ``log``."""
    environment = {
        **os.environ,
        "TRADINGBOT_BOOTSTRAP": bootstrap,
        "TRADINGBOT_DB_URL": url,
        "TRADINGBOT_SINK_GROUP_ID": group,
        "TRADINGBOT_SINK_METRICS_PORT": "0",
        **env,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.timescale_sink"],
            cwd=REPO,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
