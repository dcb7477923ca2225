"""The sink loop: consume, decode, project into rows, write one batch, then commit the offsets.

While a batch is written, the next one is read, decoded and projected.

Offsets of its own consumer group are committed only after the batch's
transaction has committed (and its dead letters are on the broker), so a
crash at any point redelivers at most the last batch, which the upserts by
event id write as nothing. A transient database error (a restart, a lost
connection) retries the same batch with backoff for up to ``retry_s``; a
record that does not decode, or whose rows the database refuses, goes to
``<topic>.dlq`` with the reason, and the sink goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from core.events import PortfolioClosed
from services import kafka
from services.config import KafkaConfig
from services.db import migrations
from services.db.config import DatabaseConfig
from services.db.errors import DatabaseUnavailable, RowRejected
from services.db.rows import TABLES, TOPICS, Batch, project
from services.db.store import ProjectionStore, TransientDatabaseError
from services.metrics import ServiceMetrics
from services.timescale_sink.config import SinkConfig
from services.timescale_sink.metrics import SinkMetrics
from streams.codec import CODEC, CodecError

SERVICE = "timescale-sink"
log = logging.getLogger(SERVICE)
T = TypeVar("T")
IDLE_CHECK_S = 0.5
"""How often an idle sink checks whether its rollups are due for a refresh."""
Taken = tuple[ConsumerRecord, object]
"""A consumed record and its decoded event."""


@dataclass(frozen=True, slots=True)
class _Pending:
    """A batch read and projected, waiting to be written, and the positions after it."""

    taken: list[Taken]
    batch: Batch
    positions: dict[TopicPartition, int]


async def _next(
    ready: asyncio.Queue[_Pending], reader: asyncio.Future[None], timeout_s: float
) -> _Pending | None:
    """The reader's next batch, None after ``timeout_s`` without one, or the reader's error."""
    get = asyncio.ensure_future(ready.get())
    either: list[asyncio.Future[object]] = [
        cast("asyncio.Future[object]", f) for f in (get, reader)
    ]
    await asyncio.wait(either, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    if get.done():
        return get.result()
    get.cancel()
    if reader.done():
        reader.result()  # raises what stopped the reader
        raise RuntimeError("the sink's reader stopped")
    return None


class TimescaleSink:
    """Projects the log's topics into the database, batch by batch."""

    def __init__(
        self,
        config: KafkaConfig,
        database: DatabaseConfig,
        sink: SinkConfig | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.database = database
        self.sink = sink or SinkConfig()
        self.service_metrics = ServiceMetrics(SERVICE, registry)
        self.metrics = SinkMetrics(self.service_metrics.registry)
        self.path: str = ""
        """The schema's migration path, once the database has been reached."""
        self._dirty_since: float | None = None
        self._refresh_wanted = False
        self._refresh_task: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        """Run until cancelled."""
        self.service_metrics.serve(self.sink.metrics_port, "TRADINGBOT_SINK_METRICS_PORT")
        await kafka.resilient(self._serve_once, SERVICE)

    @property
    def refresh_pending(self) -> bool:
        """Whether a refresh of the daily rollups is asked for or running."""
        task = self._refresh_task
        return self._refresh_wanted or (task is not None and not task.done())

    async def _serve_once(self) -> None:
        cfg = self.config
        store = await self._retry(self._open_store, "opening the database")
        try:
            producer = kafka.producer(cfg.bootstrap, SERVICE)
            await kafka.start(producer, cfg.bootstrap)
            try:
                consumer = kafka.consumer(cfg.bootstrap, SERVICE, group_id=self.sink.group_id)
                await kafka.start(consumer, cfg.bootstrap)
                try:
                    await self._loop(consumer, store, producer)
                finally:
                    await kafka.stop(consumer)
            finally:
                await kafka.stop(producer)
        finally:
            if self._refresh_task is not None:
                self._refresh_task.cancel()
                await asyncio.gather(self._refresh_task, return_exceptions=True)
                self._refresh_task = None
            await store.close()

    async def _loop(
        self,
        consumer: kafka.AIOKafkaConsumer,
        store: ProjectionStore,
        producer: kafka.AIOKafkaProducer,
    ) -> None:
        """Read and decode the next batch while the last one is written, then commit it."""
        partitions = await kafka.assign(consumer, TOPICS, from_beginning=True)
        done = await kafka.committed(consumer, partitions)
        for tp, offset in done.items():
            consumer.seek(tp, offset)
        dead = kafka.DeadLetters(producer, SERVICE, self.service_metrics)
        ready: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=1)
        reader = asyncio.ensure_future(self._read(consumer, partitions, done, dead, ready))
        lag = asyncio.ensure_future(self.service_metrics.track_lag(consumer))
        try:
            while True:
                pending = await _next(ready, reader, IDLE_CHECK_S)
                if pending is not None:
                    if pending.taken:
                        await self._write(pending.taken, pending.batch, store, dead)
                    await dead.flush()
                    moved = {tp: p for tp, p in pending.positions.items() if done.get(tp) != p}
                    if moved:
                        await consumer.commit(moved)
                        done.update(moved)
                self._check_refresh(store)
        finally:
            lag.cancel()
            reader.cancel()
            await asyncio.gather(reader, lag, return_exceptions=True)

    async def _read(
        self,
        consumer: kafka.AIOKafkaConsumer,
        partitions: Sequence[TopicPartition],
        done: dict[TopicPartition, int],
        dead: kafka.DeadLetters,
        ready: asyncio.Queue[_Pending],
    ) -> None:
        """Gather, decode and project batches; hand each on with the positions after it.

        A position also moves past transaction markers, so a caught-up sink's
        committed offsets equal the partitions' end offsets.
        """
        seen = dict(done)
        while True:
            records = await self._gather(consumer)
            taken: list[Taken] = []
            for record in records:
                try:
                    taken.append((record, CODEC.decode(record.value)))
                except CodecError as e:
                    await dead.send(record, str(e))
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if records or positions != seen:
                seen = positions
                await ready.put(_Pending(taken, project(e for _, e in taken), positions))

    async def _open_store(self) -> ProjectionStore:
        if self.sink.migrate:
            report = await asyncio.to_thread(
                migrations.migrate,
                self.database.url,
                timescaledb=self.database.timescaledb == "auto",
                timeout_s=self.database.connect_timeout_s,
            )
            if report.applied:
                log.info(
                    "migrated the schema to v%d on the %s path (%s)",
                    report.version,
                    report.path,
                    ", ".join(m.file for m in report.applied),
                )
        store = await ProjectionStore.open(self.database)
        self.path = store.path
        return store

    async def _gather(self, consumer: kafka.AIOKafkaConsumer) -> list[ConsumerRecord]:
        """Up to ``batch_records`` records: what is there, plus what comes within ``linger_ms``."""
        limit = self.sink.batch_records
        batches = await consumer.getmany(timeout_ms=500, max_records=limit)
        records = [r for rs in batches.values() for r in rs]
        deadline = time.monotonic() + self.sink.linger_ms / 1000
        while records and len(records) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = await consumer.getmany(
                timeout_ms=int(left * 1000), max_records=limit - len(records)
            )
            got = [r for rs in more.values() for r in rs]
            if not got:
                break
            records.extend(got)
        return records

    async def _write(
        self,
        taken: Sequence[Taken],
        batch: Batch,
        store: ProjectionStore,
        dead: kafka.DeadLetters,
    ) -> None:
        """Write ``batch`` (the rows of ``taken``); on a refused row, halve to the bad record."""
        if not len(batch):
            return
        began = time.perf_counter()
        try:
            new = await self._retry(lambda: store.write(batch), "writing a batch")
        except RowRejected as e:
            if len(taken) == 1:
                record = taken[0][0]
                log.warning("dead-lettering %s@%d: %s", record.topic, record.offset, e)
                await dead.send(record, f"the database refused its rows: {e}")
                return
            for half in (taken[: len(taken) // 2], taken[len(taken) // 2 :]):
                await self._write(half, project(event for _, event in half), store, dead)
            return
        self._observe(batch, new, time.perf_counter() - began)
        if any(isinstance(event, PortfolioClosed) for _, event in taken):
            self._refresh_wanted = True  # a run is complete: its daily rollups too

    def _observe(self, batch: Batch, new: dict[str, int], seconds: float) -> None:
        m = self.metrics
        m.batches.inc()
        m.batch_seconds.observe(seconds)
        for table, count in new.items():
            m.rows.labels(table).inc(count)
        for projected in TABLES:
            offered = len(batch.rows[projected.name])
            if offered > new.get(projected.name, 0):
                m.redelivered.labels(projected.name).inc(offered - new.get(projected.name, 0))
        if any(new.values()) and self._dirty_since is None:
            self._dirty_since = time.monotonic()

    def _check_refresh(self, store: ProjectionStore) -> None:
        """Start a refresh in the background when one is due; raise what a finished one raised."""
        task = self._refresh_task
        if task is not None and task.done():
            self._refresh_task = None
            task.result()
        since = self._dirty_since
        if since is not None and time.monotonic() - since >= self.sink.refresh_interval_s:
            self._refresh_wanted = True
        if self._refresh_wanted and self._refresh_task is None:
            self._refresh_task = asyncio.ensure_future(self._refresh(store))

    async def _refresh(self, store: ProjectionStore) -> None:
        """Refresh the rollups until no new refresh was asked for meanwhile (the loop goes on)."""
        while self._refresh_wanted:
            self._refresh_wanted = False
            self._dirty_since = None
            began = time.perf_counter()
            await self._retry(store.refresh, "refreshing the daily rollups")
            self.metrics.refresh_seconds.observe(time.perf_counter() - began)

    async def _retry(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``attempt`` again after transient database errors, backing off, up to ``retry_s``."""
        delay = 0.2
        lost_since: float | None = None
        while True:
            try:
                result = await attempt()
            except (TransientDatabaseError, DatabaseUnavailable) as e:
                now = time.monotonic()
                lost_since = lost_since if lost_since is not None else now
                self.metrics.up.set(0)
                if now - lost_since > self.sink.retry_s:
                    raise DatabaseUnavailable(
                        f"{SERVICE}: gave up {what} after {self.sink.retry_s:.0f}s: {e} "
                        "(TRADINGBOT_SINK_RETRY_S sets how long to wait)"
                    ) from e
                self.metrics.retries.inc()
                log.warning("%s: database error (%s); trying again in %.1fs", what, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.metrics.up.set(1)
            return result


class GroupWatch:
    """Tells whether a sink group has committed the end of every partition the sink reads."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.client = kafka.consumer(bootstrap, f"{SERVICE}-watch", group_id=group)
        self.partitions: list[TopicPartition] = []

    async def __aenter__(self) -> GroupWatch:
        await kafka.start(self.client, self.bootstrap)
        self.partitions = await kafka.assign(self.client, TOPICS, from_beginning=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        await kafka.stop(self.client)

    async def caught_up(self) -> bool:
        """Whether the group's committed offsets are the partitions' end offsets."""
        ends = await self.client.end_offsets(self.partitions)
        done = await kafka.committed(self.client, self.partitions)
        return all(done.get(tp, 0) >= end for tp, end in ends.items())


async def caught_up(bootstrap: str, group: str) -> bool:
    """Whether sink group ``group`` has committed the end of every partition it reads (once)."""
    async with GroupWatch(bootstrap, group) as watch:
        return await watch.caught_up()


async def main() -> None:
    """Entry point of the service process."""
    await TimescaleSink(KafkaConfig(), DatabaseConfig(), SinkConfig()).serve()
