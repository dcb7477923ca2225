"""Thin aiokafka helpers shared by the services: clients, topics, reading, dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from core.events import Event
from services.metrics import ServiceMetrics
from streams.codec import CODEC, CodecError, DeadLettered
from streams.topics import ALL_TOPICS, Topic


class BrokerError(RuntimeError):
    """The Kafka broker cannot be reached or refused a request."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A consumed record and its decoded event."""

    record: ConsumerRecord
    event: object


def producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        request_timeout_ms=30_000,
    )


def consumer(bootstrap: str, client_id: str) -> AIOKafkaConsumer:
    """A low-latency consumer without a group: partitions are assigned explicitly."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
        max_poll_records=5000,
        auto_offset_reset="earliest",
    )


async def start(client: AIOKafkaProducer | AIOKafkaConsumer, bootstrap: str) -> None:
    """Start a client, translating connection failures into a BrokerError."""
    try:
        await client.start()
    except KafkaConnectionError as e:
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap}: is it running? "
            "(`make kafka-start` or deploy/local/kafka/kafka.sh start)"
        ) from e


async def create_topics(bootstrap: str, topics: Sequence[Topic] = ALL_TOPICS) -> list[str]:
    """Create the missing topics; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tradingbot-admin")
    try:
        await admin.start()
    except KafkaConnectionError as e:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}") from e
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t.name not in existing]
        if wanted:
            try:
                await admin.create_topics(
                    [NewTopic(t.name, t.partitions, 1, topic_configs=t.configs()) for t in wanted]
                )
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def assign(
    client: AIOKafkaConsumer, topics: Iterable[str], *, from_beginning: bool = False
) -> None:
    """Assign every partition of ``topics`` and seek to their end (or beginning)."""
    partitions: list[TopicPartition] = []
    for name in topics:
        for _ in range(100):
            found = client.partitions_for_topic(name)
            if found:
                break
            await client._client.force_metadata_update()  # noqa: SLF001
            await asyncio.sleep(0.05)
        else:
            raise BrokerError(f"topic {name} does not exist (run `tradingbot topics`)")
        partitions.extend(TopicPartition(name, p) for p in sorted(found))
    client.assign(partitions)
    if from_beginning:
        await client.seek_to_beginning(*partitions)
    else:
        await client.seek_to_end(*partitions)
    for tp in partitions:
        await client.position(tp)


class DeadLetters:
    """Sends records that cannot be used to ``<topic>.dlq`` with the reason."""

    def __init__(
        self, client: AIOKafkaProducer, service: str, metrics: ServiceMetrics | None = None
    ) -> None:
        self._producer = client
        self._service = service
        self._metrics = metrics
        self.count = 0

    async def send(self, record: ConsumerRecord, reason: str) -> None:
        """Dead-letter one record."""
        letter = DeadLettered(
            event_id=f"dlq/{record.topic}/{record.partition}/{record.offset}",
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode("utf-8", "replace") if record.key else None,
            reason=reason,
            service=self._service,
            payload=record.value or b"",
        )
        await self._producer.send_and_wait(
            f"{record.topic}.dlq", CODEC.encode(letter), key=record.key
        )
        self.count += 1
        if self._metrics is not None:
            self._metrics.dead_letters.labels(self._service, record.topic).inc()


async def poll(
    client: AIOKafkaConsumer, dead_letters: DeadLetters, timeout_ms: int = 100
) -> list[Decoded]:
    """Fetch what is there; records that cannot be decoded go to the dead-letter topic."""
    out: list[Decoded] = []
    batches = await client.getmany(timeout_ms=timeout_ms)
    for records in batches.values():
        for record in records:
            try:
                event = CODEC.decode(record.value)
            except CodecError as e:
                await dead_letters.send(record, str(e))
                continue
            out.append(Decoded(record, event))
    return out


async def publish(client: AIOKafkaProducer, topic: str, key: str, events: Iterable[object]) -> None:
    """Send events in order under one key and wait until the broker has them all."""
    await publish_keyed(client, topic, [(key, e) for e in events])


async def publish_keyed(
    client: AIOKafkaProducer, topic: str, keyed: Iterable[tuple[str, object]]
) -> None:
    """Send ``(key, event)`` pairs and wait until the broker has them all."""
    futures = [await client.send(topic, CODEC.encode(e), key=k.encode()) for k, e in keyed]
    if futures:
        await asyncio.gather(*futures)


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    keep: Callable[[object], bool] = lambda _: True,
    until: Callable[[object], bool] | None = None,
    timeout_s: float = 60.0,
) -> list[object]:
    """Read the decodable records of ``topic`` from the beginning that ``keep`` accepts.

    Stops at the end of the log, or, with ``until``, once a kept record
    satisfies it (waiting up to ``timeout_s``). Records that do not decode are
    passed over: the consumers have already dead-lettered them.
    """
    client = consumer(bootstrap, "tradingbot-reader")
    await start(client, bootstrap)
    try:
        await assign(client, [topic], from_beginning=True)
        partitions = list(client.assignment())
        end = await client.end_offsets(partitions)
        found: list[object] = []
        deadline = time.monotonic() + timeout_s
        done = False
        while not done:
            batches = await client.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        event = CODEC.decode(record.value)
                    except CodecError:
                        continue
                    if keep(event):
                        found.append(event)
                        if until is not None and until(event):
                            done = True
            if until is None and await _caught_up(client, end):
                done = True
            if not done and time.monotonic() > deadline:
                raise BrokerError(f"timed out after {timeout_s:.0f}s reading {topic}")
        return found
    finally:
        await client.stop()


async def read_run(
    bootstrap: str,
    topic: str,
    run_id: str,
    *,
    until: type | None = None,
    timeout_s: float = 60.0,
) -> list[Event]:
    """Read one run's events of ``topic`` from the beginning (up to an ``until`` event)."""
    found = await read_topic(
        bootstrap,
        topic,
        keep=lambda e: isinstance(e, Event) and e.run_id == run_id,
        until=(lambda e: isinstance(e, until)) if until is not None else None,
        timeout_s=timeout_s,
    )
    return [e for e in found if isinstance(e, Event)]


async def _caught_up(client: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await client.position(tp) < offset:
            return False
    return True


__all__ = [
    "BrokerError",
    "DeadLetters",
    "Decoded",
    "KafkaError",
    "assign",
    "consumer",
    "create_topics",
    "poll",
    "producer",
    "publish",
    "publish_keyed",
    "read_run",
    "read_topic",
    "start",
]
