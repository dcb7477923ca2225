"""The sink loop: consume, decode, project into rows, write one batch, then commit the offsets.

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
from typing import TypeVar

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
Taken = tuple[ConsumerRecord, object]
"""A consumed record and its decoded event."""


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

    async def serve(self) -> None:
        """Run until cancelled."""
        self.service_metrics.serve(self.sink.metrics_port, "TRADINGBOT_SINK_METRICS_PORT")
        await kafka.resilient(self._serve_once, SERVICE)

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
                    partitions = await kafka.assign(consumer, TOPICS, from_beginning=True)
                    done = await kafka.committed(consumer, partitions)
                    for tp, offset in done.items():
                        consumer.seek(tp, offset)
                    dead = kafka.DeadLetters(producer, SERVICE, self.service_metrics)
                    lag = asyncio.ensure_future(self.service_metrics.track_lag(consumer))
                    try:
                        while True:
                            records = await self._gather(consumer)
                            if records:
                                await self._take(records, store, dead)
                            await self._commit(consumer, partitions, done)
                            await self._maybe_refresh(store)
                    finally:
                        lag.cancel()
                finally:
                    await consumer.stop()
            finally:
                await producer.stop()
        finally:
            await store.close()

    async def _commit(
        self,
        consumer: kafka.AIOKafkaConsumer,
        partitions: Sequence[TopicPartition],
        done: dict[TopicPartition, int],
    ) -> None:
        """Commit the consumer's positions that moved: every record before them is written.

        A position also moves past transaction markers, so a caught-up sink's
        committed offsets equal the partitions' end offsets.
        """
        moved = {}
        for tp in partitions:
            position = await consumer.position(tp)
            if position != done.get(tp):
                moved[tp] = position
        if moved:
            await consumer.commit(moved)
            done.update(moved)

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

    async def _take(
        self, records: Sequence[ConsumerRecord], store: ProjectionStore, dead: kafka.DeadLetters
    ) -> None:
        """Decode and write one batch; dead-letter what cannot be used; wait for the letters."""
        taken: list[Taken] = []
        for record in records:
            try:
                taken.append((record, CODEC.decode(record.value)))
            except CodecError as e:
                await dead.send(record, str(e))
        await self._write(taken, store, dead)
        await dead.flush()

    async def _write(
        self, taken: Sequence[Taken], store: ProjectionStore, dead: kafka.DeadLetters
    ) -> None:
        """Write the rows of ``taken``; on a refused row, halve until the bad record is alone."""
        batch = project(event for _, event in taken)
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
            half = len(taken) // 2
            await self._write(taken[:half], store, dead)
            await self._write(taken[half:], store, dead)
            return
        self._observe(batch, new, time.perf_counter() - began)
        if any(isinstance(event, PortfolioClosed) for _, event in taken):
            await self._refresh(store)  # a run is complete: its daily rollups too

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

    async def _maybe_refresh(self, store: ProjectionStore) -> None:
        since = self._dirty_since
        if since is not None and time.monotonic() - since >= self.sink.refresh_interval_s:
            await self._refresh(store)

    async def _refresh(self, store: ProjectionStore) -> None:
        began = time.perf_counter()
        await self._retry(store.refresh, "refreshing the daily rollups")
        self._dirty_since = None
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


async def caught_up(bootstrap: str, group: str) -> bool:
    """Whether sink group ``group`` has committed the end of every partition it reads."""
    client = kafka.consumer(bootstrap, f"{SERVICE}-lag", group_id=group)
    await kafka.start(client, bootstrap)
    try:
        partitions = await kafka.assign(client, TOPICS, from_beginning=True)
        ends = await client.end_offsets(partitions)
        done = await kafka.committed(client, partitions)
        return all(done.get(tp, 0) >= end for tp, end in ends.items())
    finally:
        await client.stop()


async def main() -> None:
    """Entry point of the service process."""
    await TimescaleSink(KafkaConfig(), DatabaseConfig(), SinkConfig()).serve()
