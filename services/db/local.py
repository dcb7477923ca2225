"""The local TimescaleDB of deploy/local/timescaledb for the demo, and what it holds of a run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from services.db import migrations
from services.db.errors import DatabaseError, describe
from services.db.store import RUN_TABLES
from services.timescale_sink.app import GroupWatch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "local" / "timescaledb" / "timescaledb.sh"


@dataclass
class LocalDatabase:
    """The ``timescaledb.sh`` server on ``port``: reused if it runs, else started and stopped."""

    port: int
    started: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        """Connection URL of the ``tradingbot`` database."""
        return f"postgresql://tradingbot:tradingbot@127.0.0.1:{self.port}/tradingbot"

    def script(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``timescaledb.sh COMMAND`` for this port."""
        if not SCRIPT.is_file():
            raise DatabaseError(f"{SCRIPT} is missing: run from a clone of the repository")
        return subprocess.run(
            ["bash", str(SCRIPT), command],
            env={**os.environ, "TIMESCALEDB_PORT": str(self.port)},
            text=True,
            capture_output=True,
            check=False,
        )

    def start(self) -> str:
        """Start the server unless it runs, migrate the schema; return its URL."""
        was_running = self.script("status").returncode == 0
        started = self.script("start")
        if started.returncode != 0:
            raise DatabaseError(
                f"TimescaleDB did not start:\n{started.stdout}{started.stderr}"
                "(run without the database: --no-database)"
            )
        self.started = not was_running
        migrations.migrate(self.url)
        return self.url

    def stop(self) -> None:
        """Stop the server if it was started here."""
        if self.started:
            self.script("stop")
            self.started = False


async def wait_for_sink(
    bootstrap: str, group: str, check: Callable[[], None], timeout_s: float = 120.0
) -> None:
    """Wait until sink group ``group`` has written the whole log; ``check`` raises if it died."""
    deadline = time.monotonic() + timeout_s
    async with GroupWatch(bootstrap, group) as watch:
        while not await watch.caught_up():
            check()
            if time.monotonic() > deadline:
                raise DatabaseError(f"the sink did not catch up within {timeout_s:.0f}s")
            await asyncio.sleep(0.5)


@dataclass(frozen=True, slots=True)
class RunRows:
    """What the database holds of one run."""

    url: str
    path: str
    rows: dict[str, int]


def run_rows(url: str, run_id: str) -> RunRows:
    """The migration path and the rows of ``run_id`` per table."""
    try:
        with psycopg.connect(url) as conn:
            done = migrations.applied(conn)
            rows = {}
            for table in RUN_TABLES:
                found = conn.execute(
                    f"SELECT count(*) FROM {table} WHERE run_id = %s".encode(), (run_id,)
                ).fetchone()
                rows[table] = int(found[0]) if found else 0
    except psycopg.Error as e:
        raise DatabaseError(f"cannot read the projection: {describe(e)}") from e
    return RunRows(url, done[0].path if done else "", rows)


def format_run_rows(found: RunRows, run_id: str) -> list[str]:
    """What the demo prints about the projection of its run."""
    shown = ("bars", "actions", "decisions", "fills", "marks", "holdings", "collapse_alerts")
    counts = ", ".join(f"{table} {found.rows[table]:,}" for table in shown)
    return [
        f"TimescaleDB ({found.path} path): {counts}",
        f"  connect: psql {found.url}",
        f"  query:   tradingbot db query pnl_by_symbol --run {run_id} --url {found.url}",
    ]
