"""Thin aiokafka helpers shared by the services: clients, topics, reading, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiokafka.producer.sender
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    ProducerFenced,
    TopicAlreadyExistsError,
)

from core.events import Event
from services.metrics import ServiceMetrics
from streams.codec import CODEC, CodecError, DeadLettered
from streams.topics import ALL_TOPICS, Topic, misplaced

TXN_RETRY_S = 0.002
"""Wait before retrying the first send of a transaction that the broker answers
"concurrent transactions" (the previous one's markers are still being written,
KAFKA-5477). aiokafka waits a fixed 20 ms there, which was most of a lockstep
step's wall time (two transactions per step); the markers take 1-5 ms on a
local broker (benchmarks/run.py)."""

if not hasattr(aiokafka.producer.sender, "BACKOFF_OVERRIDE"):  # pragma: no cover
    raise ImportError("aiokafka no longer has producer.sender.BACKOFF_OVERRIDE: see TXN_RETRY_S")
aiokafka.producer.sender.BACKOFF_OVERRIDE = TXN_RETRY_S


class BrokerError(RuntimeError):
    """The Kafka broker cannot be reached or refused a request."""


class BrokerUnreachable(BrokerError):
    """No broker answers at the bootstrap address."""


class Fenced(RuntimeError):
    """Another instance took over this service's transactional id (it serves the run now)."""


T = TypeVar("T")
log = logging.getLogger("tradingbot.kafka")


def broker_retry_s() -> float:
    """How long a service keeps trying to reach a lost broker (``TRADINGBOT_BROKER_RETRY_S``)."""
    return float(os.environ.get("TRADINGBOT_BROKER_RETRY_S", "60"))


async def resilient(attempt: Callable[[], Awaitable[T]], service: str) -> T:
    """Run ``attempt`` again from the start while the broker is lost, up to ``broker_retry_s``.

    Each attempt rebuilds the service's state from the log, so starting again
    is exactly a restart after a crash. A fenced producer is not retried: the
    instance that fenced it serves the run.
    """
    window = broker_retry_s()
    delay = 0.5
    lost_since: float | None = None
    while True:
        began = time.monotonic()
        try:
            return await attempt()
        except ProducerFenced as e:
            raise Fenced(
                f"{service}: another instance took over this run (its transactional id "
                "fenced this one); stop one of them"
            ) from e
        except (BrokerError, KafkaError) as e:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # stopped from outside while the broker failed: not a retry
            now = time.monotonic()
            ran = not isinstance(e, BrokerUnreachable) and now - began > window
            if lost_since is None or ran:
                lost_since = now
            if now - lost_since > window:
                raise BrokerError(
                    f"{service}: gave up after {window:.0f}s: {e} "
                    "(TRADINGBOT_BROKER_RETRY_S sets how long to wait)"
                ) from e
            log.warning("%s: broker error (%s); starting again in %.1fs", service, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


MAX_DEAD_LETTER_PAYLOAD = 64 * 1024
"""Bytes of a bad record's payload kept in its dead letter (the broker caps records at 1 MB)."""


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


def transactional_producer(
    bootstrap: str, client_id: str, transactional_id: str
) -> AIOKafkaProducer:
    """A transactional producer: what it sends in one transaction is visible all or none.

    Starting it fences any earlier instance with the same ``transactional_id``
    and aborts that instance's open transaction.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id,
        linger_ms=0,
        request_timeout_ms=30_000,
    )


def group_consumer(bootstrap: str, client_id: str, group_id: str) -> AIOKafkaConsumer:
    """A low-latency ``read_committed`` member of consumer group ``group_id`` (subscribe it).

    Kafka shares the subscribed partitions among the group's members and moves
    a dead member's partitions to the others after ``session_timeout_ms``.
    """
    return consumer(
        bootstrap, client_id, group_id, session_timeout_ms=6000, heartbeat_interval_ms=1000
    )


def consumer(
    bootstrap: str, client_id: str, group_id: str | None = None, **settings: int
) -> AIOKafkaConsumer:
    """A low-latency ``read_committed`` consumer: partitions are assigned explicitly.

    ``group_id`` only names where offsets are committed (no group membership);
    ``settings`` are more aiokafka settings (``group_consumer``'s session).
    """
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
        max_poll_records=5000,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **settings,
    )


STOP_TIMEOUT_S = 10.0
"""How long closing a client may take before it is abandoned (see ``stop``)."""


async def stop(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    """Close a client, giving up after ``STOP_TIMEOUT_S``.

    A producer's close waits for its batches in flight, and they never drain
    once the client's own sender task is gone: that is what happens when a
    whole event loop is cancelled at once (``asyncio.run`` ending on an error).
    Without the bound the service that owns the client never finishes.
    """
    try:
        await asyncio.wait_for(client.stop(), STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning(
            "%s did not close within %.0fs; abandoned", type(client).__name__, STOP_TIMEOUT_S
        )


@contextlib.asynccontextmanager
async def transaction(producer: AIOKafkaProducer) -> AsyncGenerator[None, None]:
    """One transaction of ``producer``: committed at the end, aborted on any error.

    aiokafka's own context, with its abort bounded by ``STOP_TIMEOUT_S``: a
    task cancelled with the rest of its loop has lost the sender the abort
    waits for. An abort that does not end is left to the broker, which aborts
    the transaction when the next instance starts or its timeout passes.
    """
    context = producer.transaction()
    await context.__aenter__()
    try:
        yield
    except BaseException as e:
        try:
            await asyncio.wait_for(context.__aexit__(type(e), e, e.__traceback__), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("a transaction's abort did not end within %.0fs", STOP_TIMEOUT_S)
        raise
    await context.__aexit__(None, None, None)


async def start(client: AIOKafkaProducer | AIOKafkaConsumer, bootstrap: str) -> None:
    """Start a client, translating connection failures into a BrokerError."""
    try:
        await client.start()
    except KafkaConnectionError as e:
        with contextlib.suppress(Exception):
            await stop(client)
        raise BrokerUnreachable(
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
) -> list[TopicPartition]:
    """Assign every partition of ``topics``, seek to their end (or beginning); return them."""
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
    return partitions


async def committed(
    client: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The offsets committed for the consumer's group (partitions without one are left out)."""
    found: dict[TopicPartition, int] = {}
    for tp in partitions:
        offset = await client.committed(tp)
        if offset is not None and offset >= 0:
            found[tp] = offset
    return found


class DeadLetters:
    """Sends records that cannot be used to ``<topic>.dlq`` with the reason and source offset.

    ``send`` only queues the letter; ``flush`` waits until the broker has them
    (inside a transaction, the commit does).
    """

    def __init__(
        self, client: AIOKafkaProducer, service: str, metrics: ServiceMetrics | None = None
    ) -> None:
        self._producer = client
        self._service = service
        self._metrics = metrics
        self._pending: list[asyncio.Future[object]] = []
        self.count = 0

    async def send(self, record: ConsumerRecord, reason: str) -> None:
        """Queue the dead letter of one record."""
        payload = record.value or b""
        if len(payload) > MAX_DEAD_LETTER_PAYLOAD:
            reason = f"{reason} (payload cut to {MAX_DEAD_LETTER_PAYLOAD} of {len(payload)} bytes)"
            payload = payload[:MAX_DEAD_LETTER_PAYLOAD]
        key = record.key[:MAX_DEAD_LETTER_PAYLOAD] if record.key else None
        letter = DeadLettered(
            event_id=f"dlq/{self._service}/{record.topic}/{record.partition}/{record.offset}",
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key.decode("utf-8", "replace") if key else None,
            reason=reason,
            service=self._service,
            payload=payload,
        )
        self._pending.append(
            await self._producer.send(f"{record.topic}.dlq", CODEC.encode(letter), key=key)
        )
        self.count += 1
        if self._metrics is not None:
            self._metrics.dead_letters.labels(self._service, record.topic).inc()

    async def discard(self) -> None:
        """Drop the queued letters after a failed transaction (their outcome is retrieved)."""
        pending, self._pending = self._pending, []
        if pending:  # bounded: the sends of a cancelled loop never end
            done, _ = await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)
            for future in done:
                if not future.cancelled():
                    future.exception()

    async def flush(self) -> None:
        """Wait until the broker has every queued letter."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


async def poll(
    client: AIOKafkaConsumer, dead_letters: DeadLetters, timeout_ms: int = 100
) -> list[Decoded]:
    """Fetch what is there; records that cannot be decoded go to the dead-letter topic."""
    return await _decoded(await client.getmany(timeout_ms=timeout_ms), dead_letters)


async def poll_many(
    clients: Sequence[AIOKafkaConsumer], dead_letters: DeadLetters, timeout_ms: int = 100
) -> list[Decoded]:
    """``poll`` over several consumers: wait for the first with records, take what all have."""
    waits = [asyncio.ensure_future(c.getmany(timeout_ms=timeout_ms)) for c in clients]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            if not wait.done():
                wait.cancel()  # nothing is drained from a consumer until getmany returns
        await asyncio.gather(*waits, return_exceptions=True)
    batches: dict[TopicPartition, list[ConsumerRecord]] = {}
    for client, wait in zip(clients, waits, strict=True):
        if wait.cancelled():
            batches.update(await client.getmany(timeout_ms=0))
        else:
            batches.update(wait.result())
    return await _decoded(batches, dead_letters)


async def _decoded(
    batches: dict[TopicPartition, list[ConsumerRecord]], dead_letters: DeadLetters
) -> list[Decoded]:
    out: list[Decoded] = []
    for records in batches.values():
        for record in records:
            try:
                event = CODEC.decode(record.value)
            except CodecError as e:
                await dead_letters.send(record, str(e))
                continue
            problem = misplaced(event, record.topic)
            if problem is not None:
                await dead_letters.send(record, problem)
                continue
            out.append(Decoded(record, event))
    await dead_letters.flush()
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
        await stop(client)


async def records(bootstrap: str, topic: str) -> AsyncGenerator[Decoded, None]:
    """The decodable records of ``topic`` from its beginning to its end as of now."""
    client = consumer(bootstrap, "tradingbot-reader")
    await start(client, bootstrap)
    try:
        partitions = await assign(client, [topic], from_beginning=True)
        end = await client.end_offsets(partitions)
        while not await _caught_up(client, end):
            for batch in (await client.getmany(timeout_ms=200)).values():
                for record in batch:
                    try:
                        yield Decoded(record, CODEC.decode(record.value))
                    except CodecError:
                        continue
    finally:
        await stop(client)


async def sent_at(bootstrap: str, topic: str, match: Callable[[object], bool]) -> int | None:
    """When the first record of ``topic`` that ``match`` accepts was sent (ms), or None."""
    async with contextlib.aclosing(records(bootstrap, topic)) as found:
        async for item in found:
            if match(item.event):
                return int(item.record.timestamp)
    return None


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
    "Fenced",
    "assign",
    "committed",
    "consumer",
    "create_topics",
    "poll",
    "producer",
    "publish",
    "publish_keyed",
    "read_run",
    "read_topic",
    "records",
    "sent_at",
    "start",
    "stop",
    "transaction",
    "transactional_producer",
    "group_consumer",
    "poll_many",
]
