"""Re-key the ledger's decisions and order outcomes by symbol onto ``monitor.orders``.

The ledger (``portfolio.events``, one partition) is written in transactions.
This reader takes it ``read_committed`` in a consumer group of its own
(``<app id>-ledger``), so an aborted transaction never reaches a window, and
forwards every decision, fill and skip of the watched run, keyed by symbol,
in ledger order: a step's fills still come before its decisions in each
partition. At-least-once: the offsets are committed once the broker has the
forwarded records; after a restart the tail is forwarded again and the
windows ignore what they already hold.

Not a faust agent: faust-streaming's commits pass one offset gap per commit,
and each transaction leaves one (its commit marker), so on the ledger its
commits fall minutes behind what it has processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, TypeGuard

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import CommitFailedError
from mode import Service

from core.collapse import KINDS
from core.events import DecisionRecorded, OrderFilled, OrderSkipped
from streams.codec import CODEC, CodecError, DeadLettered
from streams.collapse_detector import ledger_group
from streams.collapse_detector.config import DetectorConfig
from streams.collapse_detector.metrics import DetectorMetrics
from streams.topics import MONITOR_ORDERS, PORTFOLIO_EVENTS

SERVICE = "collapse-detector"
log = logging.getLogger(SERVICE)
LedgerInput = DecisionRecorded | OrderFilled | OrderSkipped
"""What the windows take from the ledger."""


def watched(record: object, config: DetectorConfig) -> TypeGuard[LedgerInput]:
    """Tell whether ``record`` of the ledger feeds a window: a decision or order of the run."""
    return isinstance(record, DecisionRecorded | OrderFilled | OrderSkipped) and (
        not config.run_id or record.run_id == config.run_id
    )


def ledger_problem(record: LedgerInput) -> str | None:
    """Say why a ledger record cannot feed a window (a bug of its writer), or return None."""
    if isinstance(record, DecisionRecorded) and record.kind not in KINDS:
        return f"decision kind {record.kind[:50]!r} is not one of {', '.join(KINDS)}"
    return None


def dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, payload: bytes | None, reason: str
) -> DeadLettered:
    """Build the dead letter of a record the detector cannot use, with the reason."""
    return DeadLettered(
        event_id=f"dlq/{topic}/{partition}/{offset}/{SERVICE}",
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key else None,
        reason=reason,
        service=SERVICE,
        payload=(payload or b"")[: 64 * 1024],
    )


class LedgerRekeyer(Service):
    """Forward the watched ledger records to ``monitor.orders`` while the worker runs.

    A mode service: the faust app starts it with its own services and stops
    it before it stops, so the clients are closed and nothing is left half
    sent (what was not committed is forwarded again by the next worker).
    """

    def __init__(self, config: DetectorConfig, metrics: DetectorMetrics, **kwargs: Any) -> None:
        self.config = config
        self.metrics = metrics
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        """Join the ledger's consumer group and start the producer."""
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap,
            client_id=f"{SERVICE}-ledger",
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
        )
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            PORTFOLIO_EVENTS.name,
            bootstrap_servers=self.config.bootstrap,
            client_id=f"{SERVICE}-ledger",
            group_id=ledger_group(self.config.app_id),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=100,
            max_poll_records=5000,
        )
        await self.consumer.start()

    async def on_shutdown(self) -> None:
        """Close the clients once the forwarding task has stopped."""
        for client in (self.consumer, self.producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    @Service.task
    async def _forward_all(self) -> None:
        """Read, forward, wait for the broker's acknowledgements, commit; again."""
        consumer, producer = self.consumer, self.producer
        if consumer is None or producer is None:
            raise RuntimeError("the ledger rekeyer runs only once started")
        while not self.should_stop:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                continue
            acks = [
                ack
                for records in batch.values()
                for record in records
                if (ack := await self.forward(producer, record)) is not None
            ]
            await asyncio.gather(*acks)
            try:
                await consumer.commit()
            except CommitFailedError:  # rebalanced: the new owner forwards them again
                log.info("ledger offsets not committed (the group rebalanced)")

    async def forward(
        self, producer: AIOKafkaProducer, record: ConsumerRecord[bytes, bytes]
    ) -> asyncio.Future[object] | None:
        """Send ``record`` on where it belongs; return the broker's acknowledgement, if any."""
        try:
            event = CODEC.decode(record.value)
        except CodecError as e:
            return await self._dead_letter(producer, record, str(e))
        if not watched(event, self.config):
            return None
        problem = ledger_problem(event)
        if problem is not None:
            return await self._dead_letter(producer, record, problem)
        ack: asyncio.Future[object] = await producer.send(
            MONITOR_ORDERS.name,
            record.value,
            key=event.symbol.encode(),
            timestamp_ms=record.timestamp,
        )
        return ack

    async def _dead_letter(
        self, producer: AIOKafkaProducer, record: ConsumerRecord[bytes, bytes], reason: str
    ) -> asyncio.Future[object]:
        letter = dead_letter(
            PORTFOLIO_EVENTS.name, record.partition, record.offset, record.key, record.value, reason
        )
        self.metrics.dead_letters.labels(SERVICE, PORTFOLIO_EVENTS.name).inc()
        ack: asyncio.Future[object] = await producer.send(
            PORTFOLIO_EVENTS.dlq, CODEC.encode(letter), key=record.key
        )
        return ack
