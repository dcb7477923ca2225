"""Fault-test harness: a broker of its own, the three services of a run as processes.

The fault tests break a run on purpose (``kill -9`` of a service, the broker
stopped and started again, hostile records) and then compare its
``portfolio.events`` records, byte for byte, with those of an uninterrupted
run of the same span. This module does the mechanics:

- ``Broker``: a Kafka of the harness's own, started by ``deploy/local`` with a
  data directory the harness controls, so it can be stopped in the middle of a
  run and started again on the same data.
- ``RunProcesses``: ``python -m services.market_replay``, ``services.symbol_agent``
  and ``services.portfolio_manager`` for one run id, each logging to a file;
  it follows ``sim.clock``, kills and restarts a service, waits (bounded) for
  the run's ``PortfolioClosed`` and reads the run's ledger records as raw
  bytes. Whatever it started is stopped when it exits, also on failure.
- ``Ledger`` and ``ledger_difference``: the raw records of a run, and what
  differs between two runs once one run id is replaced by the other.

Every failure is a ``TrialFailed`` (an ``AssertionError``) whose message names
the trial (seed, fault, step), says what went wrong and ends with the tail of
each service's log.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.events import (
    Event,
    PortfolioClosed,
    ReplayFinished,
    ReplayStarted,
    StepCompleted,
    event_id,
)
from services.kafka import create_topics
from services.ports import free_ports
from streams.codec import CODEC, CodecError
from streams.topics import AGENT_ACTIONS, MARKET_BARS, PORTFOLIO_EVENTS, SIM_CLOCK

REPO = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO / "deploy" / "local" / "kafka" / "kafka.sh"

MARKET_REPLAY = "market-replay"
SYMBOL_AGENT = "symbol-agent"
PORTFOLIO_MANAGER = "portfolio-manager"
SERVICES: dict[str, str] = {
    MARKET_REPLAY: "services.market_replay",
    SYMBOL_AGENT: "services.symbol_agent",
    PORTFOLIO_MANAGER: "services.portfolio_manager",
}
"""The services of a run, by name, and the module each runs as."""
EXTRA_AGENTS = tuple(f"{SYMBOL_AGENT}-{i}" for i in range(2, 5))
"""More members of the symbol agents' consumer group (started by name only)."""
MODULES: dict[str, str] = {**SERVICES, **dict.fromkeys(EXTRA_AGENTS, SERVICES[SYMBOL_AGENT])}

RUN_CLOSED_EXIT = 3
"""Exit code of a service that refuses to serve a run that is already closed."""
EARLY_EXIT_GRACE_S = 5.0
"""How long a service that exited 0 may wait for the harness to see the run's end."""

SEED_VARIABLE = "TRADINGBOT_FAULT_SEED"
SOAK_VARIABLE = "TRADINGBOT_FAULT_SOAK"
LOG_TAIL_LINES = 25


def fault_seed() -> int:
    """The seed of this session's fault trials: ``TRADINGBOT_FAULT_SEED``, or a fresh one."""
    text = os.environ.get(SEED_VARIABLE, "").strip()
    if not text:
        return secrets.randbelow(2**31)
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{SEED_VARIABLE}={text!r} is not an integer seed") from None


SEED = fault_seed()
"""The seed of this session's trials (printed in every trial's name and failure)."""
RUN_NAME_WIDTH = 16


def soak() -> bool:
    """Whether the soak sizes are asked for (``TRADINGBOT_FAULT_SOAK=1``, as ``make soak`` does)."""
    return os.environ.get(SOAK_VARIABLE, "") not in ("", "0")


class TrialFailed(AssertionError):
    """A fault trial went wrong; the message says which trial, what, and shows the logs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    """The data a run replays: the first ``symbols`` symbols for ``steps`` days from ``start``."""

    symbols: int
    steps: int
    start: int = 0
    dataset: str | None = None
    """A data set for ``TRADINGBOT_REPLAY_DATASET`` (None: the bundled default)."""

    def environment(self) -> dict[str, str]:
        """The replay's settings for this span."""
        env = {
            "TRADINGBOT_REPLAY_SYMBOLS": str(self.symbols),
            "TRADINGBOT_REPLAY_STEPS": str(self.steps),
            "TRADINGBOT_REPLAY_START": str(self.start),
        }
        if self.dataset is not None:
            env["TRADINGBOT_REPLAY_DATASET"] = self.dataset
        return env


SMALL_SPAN = Span(symbols=20, steps=60)
"""The span of ``make test``'s trials: a few seconds per run."""
FULL_SPAN = Span(symbols=143, steps=245)
"""The demo's span (every symbol, every day of the bundled data): the soak's."""


def tail(
    path: Path,
    lines: int = LOG_TAIL_LINES,
    width: int = 300,
    keep: Callable[[str], bool] | None = None,
) -> str:
    """The last ``lines`` lines of a text file (those ``keep`` keeps), each cut to ``width``."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    kept = [line for line in text.splitlines() if keep is None or keep(line)]
    shown = [line if len(line) <= width else line[:width] + " ..." for line in kept]
    return "\n".join(shown[-lines:]) or "(empty)"


OPEN_TRANSACTIONS_TIMEOUT_S = 15.0
"""How long a failure's report may look for open transactions (the broker may be down)."""


def worth_showing(line: str) -> bool:
    """A service's warning or error, but the hostile models it rightly refused."""
    return (" WARNING " in line or " ERROR " in line) and "cannot serve" not in line


# --------------------------------------------------------------------- broker


class Broker:
    """A single-node Kafka of the harness's own (``deploy/local/kafka/kafka.sh``).

    Its data directory stays the same across ``stop`` and ``start``: only the
    first start formats it (``KAFKA_FRESH=1``), so a restart keeps the log.
    """

    def __init__(self, data_dir: Path) -> None:
        self.port, self.controller_port = free_ports(2)
        self.data_dir = data_dir
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._formatted = False
        self.last_start_s = 0.0
        """Seconds the last start took."""

    def _script(self, command: str, *, fresh: bool = False) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_DATA_DIR": str(self.data_dir),
        }
        env.pop("KAFKA_FRESH", None)
        if fresh:
            env["KAFKA_FRESH"] = "1"
        return subprocess.run(
            ["bash", str(KAFKA_SCRIPT), command], env=env, capture_output=True, text=True
        )

    def start(self) -> None:
        """Start the broker (formatting its data directory on the first start only)."""
        fresh = not self._formatted
        began = time.monotonic()
        done = self._script("start", fresh=fresh)
        if done.returncode != 0:
            raise TrialFailed(
                f"the fault tests' Kafka on {self.bootstrap} did not start "
                f"({'fresh' if fresh else 'on its old data'}, data {self.data_dir}):\n"
                f"{done.stdout}{done.stderr}\nlast lines of its log:\n"
                + tail(self.data_dir / "server.log", 40)
            )
        self._formatted = True
        self.last_start_s = time.monotonic() - began
        if fresh:
            asyncio.run(create_topics(self.bootstrap))

    def stop(self) -> None:
        """Stop the broker (SIGTERM; ``kafka.sh`` escalates to SIGKILL after its timeout)."""
        done = self._script("stop")
        if done.returncode != 0:
            raise TrialFailed(
                f"the fault tests' Kafka on {self.bootstrap} did not stop:\n"
                f"{done.stdout}{done.stderr}"
            )

    def running(self) -> bool:
        """Whether the broker answers ``kafka.sh status``."""
        return self._script("status").returncode == 0


# --------------------------------------------------------------------- ledgers


class LedgerRecord(NamedTuple):
    """One record of ``portfolio.events`` as the broker holds it."""

    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Ledger:
    """The records of one run on ``portfolio.events``, in log order, as raw bytes."""

    run_id: str
    records: tuple[LedgerRecord, ...]

    def closed(self) -> bool:
        """Whether the run's ``PortfolioClosed`` is among the records."""
        return any(isinstance(_decoded(r.value), PortfolioClosed) for r in self.records)

    def as_run(self, run_id: str) -> tuple[LedgerRecord, ...]:
        """The records with this run's id replaced by ``run_id`` (of the same length)."""
        if len(run_id) != len(self.run_id):
            raise ValueError(
                f"run ids {self.run_id!r} and {run_id!r} differ in length: "
                "their ledgers cannot be compared byte for byte"
            )
        old, new = self.run_id.encode(), run_id.encode()

        def swap(data: bytes | None) -> bytes | None:
            return None if data is None else data.replace(old, new)

        return tuple(LedgerRecord(swap(r.key), swap(r.value)) for r in self.records)


def _decoded(value: bytes | None) -> object:
    try:
        return CODEC.decode(value)
    except CodecError as e:
        return e


def _describe(record: LedgerRecord, limit: int = 400) -> str:
    event = _decoded(record.value)
    text = repr(event) if isinstance(event, Event) else f"undecodable ({event})"
    key = record.key.decode(errors="replace") if record.key is not None else None
    text = f"key {key!r}: {text}"
    return text if len(text) <= limit else text[:limit] + " ..."


def _kinds(records: tuple[LedgerRecord, ...]) -> str:
    counts = Counter(type(_decoded(r.value)).__name__ for r in records)
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def ledger_difference(reference: Ledger, actual: Ledger) -> str | None:
    """What differs between two runs' ledgers, byte for byte (None: they are identical).

    The reference's run id is replaced by the actual run's, in keys and values.
    """
    expected = reference.as_run(actual.run_id)
    got = actual.records
    if expected == got:
        return None
    first = next(
        (i for i, (e, g) in enumerate(zip(expected, got, strict=False)) if e != g),
        min(len(expected), len(got)),
    )
    none = "(no more records)"
    lines = [
        f"the ledger of run {actual.run_id} differs from the reference run {reference.run_id}: "
        f"{len(got)} records against {len(expected)}; first difference at record {first}",
        f"  expected: {_describe(expected[first]) if first < len(expected) else none}",
        f"  got:      {_describe(got[first]) if first < len(got) else none}",
        f"  reference records by type: {_kinds(expected)}",
        f"  this run's records by type: {_kinds(got)}",
    ]
    return "\n".join(lines)


def consumer(
    bootstrap: str, client_id: str, isolation_level: str = "read_committed"
) -> AIOKafkaConsumer:
    """A consumer without a group (partitions are assigned), of committed records by default."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )


async def end_offsets(
    bootstrap: str, topic: str, isolation_level: str = "read_committed"
) -> dict[int, int]:
    """The end offset of each partition of ``topic`` now.

    ``read_committed`` gives the last stable offsets (where a reader of
    committed records stops), ``read_uncommitted`` the high watermarks.
    """
    client = consumer(bootstrap, "fault-offsets", isolation_level)
    await client.start()
    try:
        partitions = await partitions_of(client, topic)
        ends = await client.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await client.stop()


async def partitions_of(client: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (waiting for the client's metadata to list them)."""
    for _ in range(200):
        found = client.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await client._client.force_metadata_update()  # noqa: SLF001
        await asyncio.sleep(0.05)
    raise TrialFailed(f"topic {topic} does not exist on the fault tests' broker")


async def read_ledger(bootstrap: str, run_id: str, start: int = 0) -> Ledger:
    """The records of ``run_id`` on ``portfolio.events`` from offset ``start`` to the end."""
    client = consumer(bootstrap, "fault-ledger")
    await client.start()
    try:
        (tp,) = await partitions_of(client, PORTFOLIO_EVENTS.name)
        client.assign([tp])
        client.seek(tp, start)
        end = (await client.end_offsets([tp]))[tp]
        records: list[LedgerRecord] = []
        deadline = time.monotonic() + 60
        while await client.position(tp) < end:
            if time.monotonic() > deadline:
                raise TrialFailed(f"could not read {PORTFOLIO_EVENTS.name} to offset {end}")
            for batch in (await client.getmany(tp, timeout_ms=200)).values():
                for record in batch:
                    if _of_run(record.value, run_id):
                        records.append(LedgerRecord(record.key, record.value))
        return Ledger(run_id, tuple(records))
    finally:
        await client.stop()


def _of_run(value: bytes | None, run_id: str) -> bool:
    """Whether a record belongs to ``run_id`` (undecodable ones: if they mention it)."""
    event = _decoded(value)
    if isinstance(event, Event):
        return event.run_id == run_id
    return value is not None and run_id.encode() in value


# --------------------------------------------------------------------- processes


@dataclass
class Service:
    """One service process of a run (the latest, after restarts)."""

    name: str
    log: Path
    process: subprocess.Popen[bytes]
    starts: int = 1
    exits: list[int] = field(default_factory=list)
    """Exit codes of the earlier processes (-9: killed)."""
    ended_early_at: float | None = None
    """When it was first seen exited with code 0 before its part of the run was over."""


@dataclass
class Clock:
    """What ``sim.clock`` has said of the run so far (genuine events only)."""

    run_id: str
    steps_total: int | None = None
    """From the run's ``ReplayStarted`` (None: not started yet)."""
    completed: int = -1
    finished: bool = False

    @property
    def started(self) -> bool:
        """Whether the run's ``ReplayStarted`` was seen."""
        return self.steps_total is not None

    def take(self, event: object) -> None:
        """Fold one ``sim.clock`` event.

        Only the run's own events move the harness: a ``ReplayStarted`` with
        the run's id, a ``StepCompleted`` of the next step with its id, the
        ``ReplayFinished`` of the last step; forged ones (hostile input) are
        passed over.
        """
        if not isinstance(event, Event) or event.run_id != self.run_id:
            return
        if isinstance(event, ReplayStarted):
            if self.steps_total is None and event.event_id == event_id(
                self.run_id, -1, "replay-started"
            ):
                self.steps_total = event.steps_total
        elif isinstance(event, StepCompleted):
            if event.step == self.completed + 1 and event.event_id == event_id(
                self.run_id, event.step, "completed"
            ):
                self.completed = event.step
        elif isinstance(event, ReplayFinished):
            total = self.steps_total
            if event.steps == total and event.event_id == event_id(
                self.run_id, total, "replay-finished"
            ):
                self.finished = True


def service_environment(bootstrap: str, run_id: str, span: Span) -> dict[str, str]:
    """The environment of the services of a run: this process's, less other TRADINGBOT_ settings."""
    keep = {"TRADINGBOT_LOG_LEVEL", "TRADINGBOT_BROKER_RETRY_S"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADINGBOT_") or k in keep}
    env.update(
        {
            "TRADINGBOT_BOOTSTRAP": bootstrap,
            "TRADINGBOT_RUN_ID": run_id,
            "TRADINGBOT_REPLAY_METRICS_PORT": "0",
            "TRADINGBOT_AGENT_METRICS_PORT": "0",
            "TRADINGBOT_PORTFOLIO_METRICS_PORT": "0",
            **span.environment(),
        }
    )
    return env


class RunProcesses:
    """The three services of one run as processes, and what the harness sees of the run.

    Use as ``async with``: whatever was started is stopped on the way out.
    ``label`` names the trial (seed, fault, step) in every failure message.
    """

    def __init__(
        self,
        bootstrap: str,
        run_id: str,
        span: Span,
        log_dir: Path,
        *,
        label: str,
        timeout_s: float = 90.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.run_id = run_id
        self.span = span
        self.log_dir = log_dir
        self.label = label
        self.timeout_s = timeout_s
        self.env = service_environment(bootstrap, run_id, span)
        self.services: dict[str, Service] = {}
        self.removed: dict[str, Service] = {}
        """Services killed for good (``remove``)."""
        self.clock = Clock(run_id)
        self.closed = False
        self.notes: list[str] = []
        """What the trial did, in order (shown in failure messages)."""
        self.reporters: list[Callable[[], str]] = []
        """More lines for failure messages (e.g. a hostile sender's progress)."""
        self._ledger_start = 0
        self.offsets_at_start: dict[str, dict[int, int]] = {}
        """Where the run's records begin on ``market.bars`` and ``agent.actions``."""
        self._clock_consumer: AIOKafkaConsumer | None = None
        self._ledger_consumer: AIOKafkaConsumer | None = None
        self._began = time.monotonic()

    async def __aenter__(self) -> RunProcesses:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._ledger_start = (await end_offsets(self.bootstrap, PORTFOLIO_EVENTS.name))[0]
        for topic in (MARKET_BARS.name, AGENT_ACTIONS.name):
            self.offsets_at_start[topic] = await end_offsets(self.bootstrap, topic)
        self._clock_consumer = await self._follow(SIM_CLOCK.name, from_beginning=True)
        self._ledger_consumer = await self._follow(PORTFOLIO_EVENTS.name, from_beginning=False)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()
        for client in (self._clock_consumer, self._ledger_consumer):
            if client is not None:
                await client.stop()

    async def _follow(self, topic: str, *, from_beginning: bool) -> AIOKafkaConsumer:
        client = consumer(self.bootstrap, f"fault-follow-{topic}")
        await client.start()
        partitions = await partitions_of(client, topic)
        client.assign(partitions)
        if from_beginning:
            await client.seek_to_beginning(*partitions)
        else:
            await client.seek_to_end(*partitions)
        for tp in partitions:
            await client.position(tp)
        return client

    # ---------------------------------------------------------------- services

    def start(self, *names: str) -> None:
        """Start the named services (all three by default); the run's time budget starts now."""
        if not self.services:
            self._began = time.monotonic()
        for name in names or tuple(SERVICES):
            self._spawn(name)
        self.notes.append(f"started {', '.join(names or tuple(SERVICES))}")

    def _spawn(self, name: str) -> None:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            earlier = self.services.get(name)
            if earlier is not None:
                log.write(
                    f"\n===== fault harness: {name} started again "
                    f"(start {earlier.starts + 1}) =====\n".encode()
                )
                log.flush()
            process = subprocess.Popen(
                [sys.executable, "-m", MODULES[name]],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        if earlier is None:
            self.services[name] = Service(name, log_path, process)
        else:
            earlier.process = process
            earlier.starts += 1

    def kill(self, name: str) -> int:
        """``kill -9`` the service; return the last step completed when it was killed."""
        service = self.services[name]
        code = service.process.poll()
        if code is not None:
            self.notes.append(f"{name} had already exited with code {code} before the kill")
        else:
            os.kill(service.process.pid, signal.SIGKILL)
            service.process.wait()
            self.notes.append(
                f"kill -9 {name} (pid {service.process.pid}) "
                f"when step {self.clock.completed} was the last completed"
            )
        service.exits.append(service.process.returncode)
        return self.clock.completed

    async def freeze(
        self,
        name: str,
        seconds: float,
        meanwhile: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        """Stop the service (SIGSTOP) for ``seconds``, as a long GC pause or a starved VM
        would, then let it go on (SIGCONT); return the last step completed when it froze.

        ``meanwhile`` is awaited over and over while it is frozen (a sender that goes on)."""
        service = self.services[name]
        frozen_at = self.clock.completed
        os.kill(service.process.pid, signal.SIGSTOP)
        try:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                await self.poll(timeout_ms=10 if meanwhile else 100)
                if meanwhile is not None:
                    await meanwhile()
        finally:
            os.kill(service.process.pid, signal.SIGCONT)
        self.notes.append(
            f"froze {name} (pid {service.process.pid}) for {seconds:.0f} s from when step "
            f"{frozen_at} was the last completed, to step {self.clock.completed}"
        )
        return frozen_at

    def remove(self, name: str) -> int:
        """``kill -9`` a service for good (a scaled-out member); return the last completed step."""
        step = self.kill(name)
        self.removed[name] = self.services.pop(name)
        return step

    def restart(self, name: str) -> None:
        """Start the service again with the same environment."""
        self._spawn(name)
        self.notes.append(f"restarted {name}")

    def stop_all(self) -> None:
        """Stop every service still running (SIGTERM, SIGKILL after 5 s)."""
        running = [s.process for s in self.services.values() if s.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + 5
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def check(self) -> None:
        """Fail if a service exited with an error, or ended before the run did.

        Exit code 3 (the run is already closed) is accepted from a service
        that was started again, once the run is over: killed after the end, it
        may rightly refuse. ``finish`` then insists that the ledger is complete.
        """
        for service in self.services.values():
            code = service.process.poll()
            if code is None:
                continue
            if code == 0 or (code == RUN_CLOSED_EXIT and service.starts > 1):
                self._check_end(service, code)
                continue
            self.fail(f"{service.name} exited with code {code}")

    def _check_end(self, service: Service, code: int) -> None:
        """Fail if a service exited (0, or 3 after a restart) before its part of the run was over.

        The replay is done once the run's ``ReplayFinished`` is out, the others
        once the run is closed. The harness may read those a moment after the
        service exits, so it gives them ``EARLY_EXIT_GRACE_S``.
        """
        done = self.closed or (service.name == MARKET_REPLAY and self.clock.finished)
        if done:
            service.ended_early_at = None
            return
        now = time.monotonic()
        if service.ended_early_at is None:
            service.ended_early_at = now
        elif now - service.ended_early_at > EARLY_EXIT_GRACE_S:
            self.fail(
                f"{service.name} exited with code {code} before the run was over "
                f"(last step completed {self.clock.completed}, no PortfolioClosed "
                f"{EARLY_EXIT_GRACE_S:.0f}s later)"
            )

    # ---------------------------------------------------------------- progress

    async def poll(self, timeout_ms: int = 100) -> None:
        """Read what ``sim.clock`` and ``portfolio.events`` have for the run."""
        assert self._clock_consumer is not None and self._ledger_consumer is not None
        for client in (self._clock_consumer, self._ledger_consumer):
            batches = await client.getmany(timeout_ms=timeout_ms)
            for records in batches.values():
                for record in records:
                    event = _decoded(record.value)
                    if record.topic == SIM_CLOCK.name:
                        self.clock.take(event)
                    elif (
                        isinstance(event, PortfolioClosed)
                        and event.run_id == self.run_id
                        and event.event_id.startswith(f"{self.run_id}/")
                    ):
                        self.closed = True

    @property
    def deadline(self) -> float:
        """When the run's time budget ends (``time.monotonic``)."""
        return self._began + self.timeout_s

    async def wait_for(
        self, done: Callable[[], bool], what: str, timeout_s: float | None = None
    ) -> None:
        """Poll until ``done()``; fail if a service errs or it takes longer than the budget."""
        deadline = min(
            time.monotonic() + (timeout_s if timeout_s is not None else self.timeout_s),
            self._began + self.timeout_s,
        )
        while not done():
            self.check()
            if time.monotonic() > deadline:
                self.notes.append(await self.open_transactions())
                self.fail(
                    f"timed out waiting for {what} "
                    f"({time.monotonic() - self._began:.0f}s into the trial, run budget "
                    f"{self.timeout_s:.0f}s)"
                )
            await self.poll()

    async def open_transactions(self, settle_s: float = 1.0) -> str:
        """The partitions of the run's topics where committed records stop short of the log's end.

        Looked at twice, ``settle_s`` apart: a partition whose last stable
        offset stays put below its high watermark holds a transaction that is
        open or hangs, and every reader of committed records waits there.
        """

        async def ends() -> dict[str, tuple[int, int]]:
            found: dict[str, tuple[int, int]] = {}
            for topic in (
                SIM_CLOCK.name,
                PORTFOLIO_EVENTS.name,
                MARKET_BARS.name,
                AGENT_ACTIONS.name,
            ):
                stable = await end_offsets(self.bootstrap, topic)
                high = await end_offsets(self.bootstrap, topic, "read_uncommitted")
                for p, offset in high.items():
                    if stable.get(p, offset) < offset:
                        found[f"{topic}[{p}]"] = (stable[p], offset)
            return found

        try:
            first = await asyncio.wait_for(ends(), OPEN_TRANSACTIONS_TIMEOUT_S)
            await asyncio.sleep(settle_s)
            second = await asyncio.wait_for(ends(), OPEN_TRANSACTIONS_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - a diagnosis must not hide the failure
            return f"open transactions: not read ({type(e).__name__}: {e})"
        held = [
            f"{name} stable {stable} < high watermark {high}"
            for name, (stable, high) in sorted(second.items())
            if first.get(name, (None, None))[0] == stable
        ]
        return "open transactions: " + ("; ".join(held) if held else "none (every end is stable)")

    async def wait_step(self, step: int) -> int:
        """Wait until ``step`` is completed (-1: until the replay has started); return the last."""
        if step < 0:
            await self.wait_for(lambda: self.clock.started, "the run's ReplayStarted")
        else:
            await self.wait_for(lambda: self.clock.completed >= step, f"step {step} to complete")
        return self.clock.completed

    async def finish(self, exit_timeout_s: float = 30.0) -> Ledger:
        """Wait for the run's ``PortfolioClosed`` and every service's exit; return the ledger.

        Exit codes other than 0 fail the trial, except 3 (run already closed)
        from a restarted service, accepted because the ledger is complete.
        """
        await self.wait_for(lambda: self.closed, "the run's PortfolioClosed")
        self.notes.append(f"PortfolioClosed after {time.monotonic() - self._began:.1f}s")
        deadline = time.monotonic() + exit_timeout_s
        while any(s.process.poll() is None for s in self.services.values()):
            self.check()
            if time.monotonic() > deadline:
                running = [n for n, s in self.services.items() if s.process.poll() is None]
                self.fail(f"{running} still running {exit_timeout_s:.0f}s after PortfolioClosed")
            await asyncio.sleep(0.1)
        self.check()
        ledger = await read_ledger(self.bootstrap, self.run_id, self._ledger_start)
        if not ledger.closed():
            self.fail("the ledger read back has no PortfolioClosed")
        return ledger

    def expect_same_ledger(self, reference: Ledger, actual: Ledger) -> None:
        """Fail unless ``actual`` equals the reference run's ledger byte for byte."""
        difference = ledger_difference(reference, actual)
        if difference is not None:
            self.fail(difference)

    # ---------------------------------------------------------------- failure

    def report(self) -> str:
        """The trial, what it did, each service's exit codes and log tail."""
        lines = [
            f"trial: {self.label} (the same trial again: {SEED_VARIABLE}={SEED})",
            f"run {self.run_id}, span {self.span}",
        ]
        lines.append("what happened: " + "; ".join(self.notes))
        lines += [reporter() for reporter in self.reporters]
        lines.append(
            f"sim.clock: started {self.clock.started}, last step completed "
            f"{self.clock.completed}, replay finished {self.clock.finished}; "
            f"PortfolioClosed seen {self.closed}"
        )
        for service in self.services.values():
            code = service.process.poll()
            state = "running" if code is None else f"exit code {code}"
            earlier = f", earlier exits {service.exits}" if service.exits else ""
            lines.append(
                f"--- {service.name}: {state}, started {service.starts}x{earlier}; "
                f"last {LOG_TAIL_LINES} lines of {service.log}:"
            )
            lines.append(tail(service.log))
            lines.append(f"--- {service.name}: its warnings and errors but rejected models:")
            lines.append(tail(service.log, keep=worth_showing))
        return "\n".join(lines)

    def fail(self, problem: str) -> None:
        """Raise ``TrialFailed`` with the problem and the report."""
        raise TrialFailed(f"{problem}\n{self.report()}")


def trial(
    broker: Broker, name: str, log_dir: Path, label: str, *, span: Span, timeout_s: float
) -> RunProcesses:
    """The processes of one trial's run ``name`` on ``broker``, logging under ``log_dir/name``."""
    return RunProcesses(
        broker.bootstrap,
        run_id(name),
        span,
        log_dir / name,
        label=f"seed {SEED}: {label}",
        timeout_s=timeout_s,
    )


def run_id(name: str) -> str:
    """The run id of a trial: all of equal length, so their ledgers compare byte for byte."""
    if len(name) > RUN_NAME_WIDTH:
        raise ValueError(f"run name {name!r} is longer than {RUN_NAME_WIDTH} characters")
    return f"fault-{SEED:010d}-{name:-<{RUN_NAME_WIDTH}}"


# --------------------------------------------------------------------- copies


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as it was consumed: where it lies, its bytes and what it decodes to."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    event: object


async def records_since(
    bootstrap: str, topic: str, run_id: str, since: dict[int, int]
) -> list[RawRecord]:
    """The run's decodable records of ``topic`` from offsets ``since`` to the end now."""
    client = consumer(bootstrap, "fault-copies")
    await client.start()
    try:
        partitions = await partitions_of(client, topic)
        client.assign(partitions)
        for tp in partitions:
            client.seek(tp, since.get(tp.partition, 0))
        end = await client.end_offsets(partitions)
        found: list[RawRecord] = []
        deadline = time.monotonic() + 60
        while any([await client.position(tp) < offset for tp, offset in end.items()]):
            if time.monotonic() > deadline:
                raise TrialFailed(f"could not read {topic} to its end in 60s")
            for batch in (await client.getmany(timeout_ms=200)).values():
                for r in batch:
                    event = _decoded(r.value)
                    if isinstance(event, Event) and event.run_id == run_id:
                        found.append(
                            RawRecord(r.topic, r.partition, r.offset, r.key, r.value, event)
                        )
        return found
    finally:
        await client.stop()


async def send_copies(bootstrap: str, records: list[RawRecord]) -> None:
    """Send identical copies of ``records`` (same key, value and partition)."""
    client = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="fault-copies", acks="all")
    await client.start()
    try:
        futures = [
            await client.send(r.topic, r.value, key=r.key, partition=r.partition) for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await client.stop()
