"""Re-key the ledger's decisions and order outcomes by symbol onto ``monitor.orders``.

The ledger (``portfolio.events``, one partition) is written in transactions.
This reader takes it ``read_committed`` in a consumer group of its own
(``<app id>-ledger``), so an aborted transaction never reaches a window, and
forwards every decision, fill and skip of the watched run to the partition
of its symbol, in ledger order: a step's fills still come before its
decisions in each partition. What one poll of the ledger brings is forwarded
as one ``ledger_records`` record per partition (a versioned envelope whose
data holds the original records, byte for byte), so the worker pays the
broker's and faust's cost per record once per batch, not once per action.
At-least-once: the offsets are committed once the broker has the forwarded
records; after a restart the tail is forwarded again and the windows ignore
what they already hold.

Not a faust agent: faust-streaming's commits pass one offset gap per commit,
and each transaction leaves one (its commit marker), so on the ledger its
commits fall minutes behind what it has processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import CommitFailedError
from aiokafka.partitioner import murmur2
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
BATCH = "ledger_records"
"""Wire name of a batch of ledger records on ``monitor.orders`` (schema version 1)."""
BATCH_BYTES = 512 * 1024
"""Largest batch record the reader writes (the broker's default limit is 1 MiB)."""
_HEAD = b'{"type":"%s","v":1,"data":{"records":[' % BATCH.encode()
_TAIL = b"]}}"


class _Type(msgspec.Struct):
    type: str


class _BatchData(msgspec.Struct, forbid_unknown_fields=True):
    records: list[msgspec.Raw]


class _Batch(msgspec.Struct):
    type: str
    v: int
    data: _BatchData


_type_of = msgspec.json.Decoder(_Type)
_batch = msgspec.json.Decoder(_Batch)


def encode_batch(payloads: list[bytes]) -> bytes:
    """Frame encoded ledger records, in order, as one ``ledger_records`` record."""
    return _HEAD + b",".join(payloads) + _TAIL


def batches(payloads: list[bytes], limit: int = BATCH_BYTES) -> Iterator[bytes]:
    """Frame ``payloads`` in order as batch records of at most about ``limit`` bytes each."""
    start, size = 0, 0
    for i, payload in enumerate(payloads):
        if i > start and size + len(payload) > limit:
            yield encode_batch(payloads[start:i])
            start, size = i, 0
        size += len(payload) + 1
    if start < len(payloads):
        yield encode_batch(payloads[start:])


def records_of(payload: bytes | None) -> list[bytes] | None:
    """The ledger records a ``monitor.orders`` record holds: a batch's, in order.

    Returns None when the record is not a batch (a single ledger record, or
    something to decode and dead-letter on its own); raises ``CodecError``
    for a batch that is not well formed.
    """
    if payload is None:
        return None
    try:
        kind = _type_of.decode(payload).type
    except msgspec.DecodeError:  # not a batch: decoding it on its own says what it is
        return None
    if kind != BATCH:
        return None
    try:
        batch = _batch.decode(payload)
    except msgspec.DecodeError as e:
        raise CodecError(f"invalid {BATCH}: {e}") from e
    if batch.v != 1:
        raise CodecError(f"{BATCH} schema v{batch.v} is not supported (this build reads v1)")
    return [bytes(raw) for raw in batch.data.records]


def partition_of(symbol: str, partitions: int) -> int:
    """The partition of ``monitor.orders`` that holds ``symbol`` (Kafka's default partitioner)."""
    return (murmur2(symbol.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What one poll of the ledger gives: batch payloads per partition, and dead letters."""

    by_partition: dict[int, list[bytes]]
    dead_letters: list[tuple[ConsumerRecord[bytes, bytes], str]]
    timestamp_ms: int


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
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    payload: bytes | None,
    reason: str,
    index: int | None = None,
) -> DeadLettered:
    """Build the dead letter of a record the detector cannot use, with the reason.

    ``index`` is the position of the record in a batch record (None: the record itself).
    """
    at = "" if index is None else f"/{index}"
    return DeadLettered(
        event_id=f"dlq/{topic}/{partition}/{offset}{at}/{SERVICE}",
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
        partitions = len(await producer.partitions_for(MONITOR_ORDERS.name))
        while not self.should_stop:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                continue
            forwarded = self.sort([r for records in batch.values() for r in records], partitions)
            acks = [await self._dead_letter(producer, r, why) for r, why in forwarded.dead_letters]
            for partition, payloads in forwarded.by_partition.items():
                for value in batches(payloads):
                    acks.append(
                        await producer.send(
                            MONITOR_ORDERS.name,
                            value,
                            partition=partition,
                            timestamp_ms=forwarded.timestamp_ms,
                        )
                    )
            await asyncio.gather(*acks)
            try:
                await consumer.commit()
            except CommitFailedError:  # rebalanced: the new owner forwards them again
                log.info("ledger offsets not committed (the group rebalanced)")

    def sort(self, records: list[ConsumerRecord[bytes, bytes]], partitions: int) -> Forwarded:
        """Sort ledger records, in order, into the partitions of their symbols, or dead letters."""
        by_partition: dict[int, list[bytes]] = {}
        dead: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        cache: dict[str, int] = {}
        for record in records:
            try:
                event = CODEC.decode(record.value)
            except CodecError as e:
                dead.append((record, str(e)))
                continue
            if not watched(event, self.config):
                continue
            problem = ledger_problem(event)
            if problem is not None:
                dead.append((record, problem))
                continue
            partition = cache.get(event.symbol)
            if partition is None:
                partition = cache[event.symbol] = partition_of(event.symbol, partitions)
            by_partition.setdefault(partition, []).append(record.value)
        return Forwarded(by_partition, dead, max(r.timestamp for r in records))

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
