"""Rebuild one run's rows from the log: delete them and write the run's events again.

Everything happens in one transaction, so readers see the old rows or the
new ones, never a half-built run. The rows written equal those the live
sink wrote, because both are ``rows.project`` of the same events. A log
that gives fewer rows of some table than the database had (part of the run
is past its topic's retention) is refused and nothing changes, unless
``force`` says to keep only what the log still has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from core.events import Event
from services import kafka
from services.db.errors import DatabaseError, RowRejected
from services.db.rows import TOPICS, project
from services.db.store import RUN_TABLES, AsyncConn, ProjectionStore
from services.errors import Refusal

CHUNK = 20_000
"""Events per COPY round within the rebuild's transaction."""


class RebuildRefused(DatabaseError, Refusal):
    """The log no longer has every row the database holds for the run."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild deleted and wrote, by table."""

    run_id: str
    events: int
    deleted: dict[str, int]
    written: dict[str, int]
    refused: int
    """Records whose rows the database refused (the live sink dead-lettered them)."""
    read_s: float
    write_s: float


async def read_log(bootstrap: str, run_id: str, timeout_s: float = 300.0) -> list[Event]:
    """Every decodable event of ``run_id`` on the sink's topics, each topic in log order."""
    found = await asyncio.gather(
        *(kafka.read_run(bootstrap, topic, run_id, timeout_s=timeout_s) for topic in TOPICS)
    )
    return [event for events in found for event in events]


async def rebuild(
    store: ProjectionStore, bootstrap: str, run_id: str, *, force: bool = False
) -> RebuildReport:
    """Replace the rows of ``run_id`` by those of its events on the log."""
    began = time.perf_counter()
    events = await read_log(bootstrap, run_id)
    read_s = time.perf_counter() - began
    began = time.perf_counter()
    async with store.transaction() as conn:
        deleted = await store.delete_run(conn, run_id)
        written, refused = await _write_all(store, conn, events)
        short = {
            t: (written.get(t, 0), n) for t in RUN_TABLES if (n := deleted[t]) > written.get(t, 0)
        }
        if short and not force:
            detail = ", ".join(f"{t} {w} of {n}" for t, (w, n) in short.items())
            raise RebuildRefused(
                f"the log gives fewer rows of run {run_id} than the database has ({detail}): "
                "part of the run is past its topics' retention. Nothing was changed; "
                "--force keeps only what the log still has"
            )
    await store.refresh()
    return RebuildReport(
        run_id, len(events), deleted, written, refused, read_s, time.perf_counter() - began
    )


async def _write_all(
    store: ProjectionStore, conn: AsyncConn, events: Sequence[Event]
) -> tuple[dict[str, int], int]:
    written: dict[str, int] = {}
    refused = 0
    for start in range(0, len(events), CHUNK):
        new, bad = await _write_chunk(store, conn, events[start : start + CHUNK])
        refused += bad
        for table, count in new.items():
            written[table] = written.get(table, 0) + count
    return written, refused


async def _write_chunk(
    store: ProjectionStore, conn: AsyncConn, events: Sequence[Event]
) -> tuple[dict[str, int], int]:
    """Write in a savepoint; halve around records whose rows are refused, and skip those."""
    try:
        async with conn.transaction():
            return await store.write_in(conn, project(events)), 0
    except RowRejected:
        if len(events) == 1:
            return {}, 1
        half = len(events) // 2
        left, bad_left = await _write_chunk(store, conn, events[:half])
        right, bad_right = await _write_chunk(store, conn, events[half:])
        merged = {t: left.get(t, 0) + right.get(t, 0) for t in left.keys() | right.keys()}
        return merged, bad_left + bad_right
