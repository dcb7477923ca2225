"""Portfolio manager loop: decode, validate and decide with ``core.step``, publish, commit.

The loop is a thin shell around the step aggregate (``core.step``): each
batch of records is decoded, handed to ``decide`` one by one and folded with
``evolve``; the events it produces, the dead letters of what it refused and
the consumed offsets go out in one Kafka transaction, so a step's events are
visible all or none and are never written twice. On start the manager
rebuilds its state from its own ledger and resumes its inputs at the offsets
its last transaction committed (docs/architecture.md, "Crashes and restarts").
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from dataclasses import dataclass

from aiokafka import ConsumerRecord, TopicPartition
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core import step as aggregate
from core.events import (
    ActionDecided,
    ActionLate,
    BarClosed,
    DecisionMissed,
    DecisionRecorded,
    Event,
    PortfolioOpened,
    ReplayFinished,
    ReplayStarted,
    ServiceReady,
    StepCompleted,
    service_ready,
)
from core.ledger import PortfolioState
from core.rules import TradingRules
from services import kafka
from services.config import KafkaConfig, RulesConfig
from services.errors import RunClosed
from services.latency import LatencyMetrics
from services.metrics import ServiceMetrics
from services.portfolio_manager.metrics import PortfolioMetrics
from streams.codec import CODEC, CodecError
from streams.topics import AGENT_ACTIONS, MARKET_BARS, PORTFOLIO_EVENTS, SIM_CLOCK, misplaced

SERVICE = "portfolio-manager"
log = logging.getLogger(SERVICE)
ORDER = {SIM_CLOCK.name: 0, MARKET_BARS.name: 1, AGENT_ACTIONS.name: 2}
"""Within a lockstep batch: the run's start before its bars, bars before actions.

A paced batch is taken in the order its records were sent (their timestamps,
each partition in its own order), so an action sent before the next step's
bars counts as in time even when they come in one fetch."""


class PortfolioConfig(BaseSettings):
    """Portfolio-manager settings (``TRADINGBOT_PORTFOLIO_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="TRADINGBOT_PORTFOLIO_", frozen=True, extra="ignore"
    )

    metrics_port: int = Field(9103, ge=0, le=65535)
    """Port of /metrics on 127.0.0.1 (0: none)."""


@dataclass(frozen=True, slots=True)
class _Source:
    """Where an input that the state still holds was read (its offset is not committed)."""

    tp: TopicPartition
    offset: int
    sent_ms: int = 0


def transactional_id(config: KafkaConfig) -> str:
    """The manager's transactional id: one live manager per portfolio and run."""
    return f"tradingbot-pm-{config.portfolio_id}-{config.run_id}"


class PortfolioManager:
    """Serves one run's portfolio: the step aggregate behind a transactional Kafka loop."""

    def __init__(
        self, config: KafkaConfig, rules: TradingRules, portfolio: PortfolioConfig | None = None
    ) -> None:
        self.config = config
        self.rules = rules
        self.portfolio = portfolio or PortfolioConfig()
        self.state = self._empty()
        self.service_metrics = ServiceMetrics(SERVICE)
        self.metrics = PortfolioMetrics(self.service_metrics.registry, rules.periods_per_year)
        self.latency = LatencyMetrics(self.service_metrics.registry)

    def _empty(self) -> aggregate.StepState:
        return aggregate.StepState(
            run_id=self.config.run_id, portfolio_id=self.config.portfolio_id, rules=self.rules
        )

    async def serve(self) -> PortfolioState:
        """Run until the portfolio of this run is closed; return its final state."""
        self.service_metrics.serve(self.portfolio.metrics_port, "TRADINGBOT_PORTFOLIO_METRICS_PORT")
        return await kafka.resilient(self._serve_once, SERVICE)

    async def _serve_once(self) -> PortfolioState:
        cfg = self.config
        group = transactional_id(cfg)
        producer = kafka.transactional_producer(cfg.bootstrap, SERVICE, group)
        await kafka.start(producer, cfg.bootstrap)
        try:
            consumer = kafka.consumer(cfg.bootstrap, SERVICE, group_id=group)
            await kafka.start(consumer, cfg.bootstrap)
            try:
                await self._restore()
                partitions = await kafka.assign(
                    consumer, [SIM_CLOCK.name, MARKET_BARS.name, AGENT_ACTIONS.name]
                )
                resume = await kafka.committed(consumer, partitions)
                for tp, offset in resume.items():
                    consumer.seek(tp, offset)
                position = {tp: await consumer.position(tp) for tp in partitions}
                loop = _Loop(self, producer, consumer, group, position)
                await loop.commit([service_ready(cfg.run_id, SERVICE)], force=True)
                lag = asyncio.ensure_future(self.service_metrics.track_lag(consumer))
                try:
                    while not self.state.ledger.closed:
                        await loop.step()
                finally:
                    lag.cancel()
                return self.state.ledger
            finally:
                await kafka.stop(consumer)
        finally:
            await kafka.stop(producer)

    async def _restore(self) -> None:
        """Rebuild the state from the run's ledger and the start it was opened from."""
        cfg = self.config
        ledger = await kafka.read_run(cfg.bootstrap, PORTFOLIO_EVENTS.name, cfg.run_id)
        own = [e for e in ledger if e.event_id.startswith(f"{cfg.run_id}/") and _is_ledger_event(e)]
        opened = next((e for e in own if isinstance(e, PortfolioOpened)), None)
        started: ReplayStarted | None = None
        if opened is not None:
            clock = await kafka.read_run(cfg.bootstrap, SIM_CLOCK.name, cfg.run_id)
            started = next(
                (
                    e
                    for e in clock
                    if isinstance(e, ReplayStarted)
                    and e.event_id == opened.cause_id
                    and e.symbols == opened.symbols
                ),
                None,
            )
        self.state = aggregate.restore(self._empty(), started, own)
        if self.state.ledger.closed:
            raise RunClosed(
                f"run {cfg.run_id} is already closed (its ledger ends at step "
                f"{self.state.ledger.marked_step}); start a new run id (TRADINGBOT_RUN_ID)"
            )
        if own:
            log.info(
                "resumed run %s from %d ledger events at step %d",
                cfg.run_id,
                len(own),
                self.state.ledger.marked_step,
            )


def _is_ledger_event(event: Event) -> bool:
    return not isinstance(event, ReplayStarted | BarClosed | ActionDecided | StepCompleted)


class _Loop:
    """One serve attempt's consumer, producer and offsets."""

    def __init__(
        self,
        manager: PortfolioManager,
        producer: kafka.AIOKafkaProducer,
        consumer: kafka.AIOKafkaConsumer,
        group: str,
        position: dict[TopicPartition, int],
    ) -> None:
        self.manager = manager
        self.producer = producer
        self.consumer = consumer
        self.group = group
        self.position = position
        """Next offset to read per partition (what a commit may cover)."""
        self.held: dict[tuple[str, int, str], _Source] = {}
        """Inputs the state holds, by (kind, step, symbol): their offsets stay uncommitted."""
        self.dead = kafka.DeadLetters(producer, SERVICE, manager.service_metrics)
        self.letters: list[tuple[ConsumerRecord, str]] = []

    async def step(self) -> None:
        """Take one batch of records through the aggregate and commit what it caused."""
        batches = await self.consumer.getmany(timeout_ms=100)
        if self.manager.state.paced:
            records = list(heapq.merge(*batches.values(), key=lambda r: r.timestamp))
        else:
            records = sorted(
                (r for rs in batches.values() for r in rs),
                key=lambda r: (ORDER[r.topic], r.partition, r.offset),
            )
        waiting: set[TopicPartition] = set()
        out: list[Event] = []
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp in waiting:
                continue
            if not self._take(record, tp, out):
                # The run's start has not been read yet: read this again after it.
                self.consumer.seek(tp, record.offset)
                waiting.add(tp)
        await self.commit(out)

    def _take(self, record: ConsumerRecord, tp: TopicPartition, out: list[Event]) -> bool:
        """Decide on one record; False to read it again once the run has started."""
        manager = self.manager
        try:
            item = CODEC.decode(record.value)
        except CodecError as e:
            self.letters.append((record, str(e)))
            self.position[tp] = record.offset + 1
            return True
        problem = misplaced(item, record.topic)
        if problem is not None:
            self.letters.append((record, problem))
            self.position[tp] = record.offset + 1
            return True
        inputs = ReplayStarted | BarClosed | ActionDecided | ReplayFinished
        if not isinstance(item, inputs) or item.run_id != manager.config.run_id:
            self.position[tp] = record.offset + 1
            return True  # another run's, or sim.clock's other events
        if manager.state.started is None and not isinstance(item, ReplayStarted):
            if isinstance(item, ReplayFinished):
                self.position[tp] = record.offset + 1
                return True  # a finished replay's end, read before its start: nothing to do
            return False
        events = aggregate.decide(manager.state, item)
        if not events:
            manager.service_metrics.redelivered.labels(SERVICE, record.topic).inc()
        for event in events:
            if isinstance(event, aggregate.InputRejected):
                self.letters.append((record, event.reason))
            elif isinstance(event, BarClosed):
                self.held[("bar", event.step, event.symbol)] = _Source(
                    tp, record.offset, record.timestamp
                )
            elif isinstance(event, ActionDecided):
                self.held[("action", event.step, event.symbol)] = _Source(
                    tp, record.offset, record.timestamp
                )
            elif isinstance(event, ReplayFinished):
                self.held[("finished", event.steps, "")] = _Source(tp, record.offset)
            elif not isinstance(event, ReplayStarted):
                out.append(event)
        manager.state = aggregate.fold(events, manager.state)
        self.position[tp] = record.offset + 1
        return True

    def _offsets(self) -> dict[TopicPartition, int]:
        """Offsets to commit: past everything read, except inputs the state still holds."""
        state = self.manager.state
        decided = state.ledger.decided_step
        self.held = {
            key: source
            for key, source in self.held.items()
            if (key[0] == "bar" and key[1] > decided)
            or (key[0] == "action" and key[2] in state.actions and key[1] == state.decision_step)
            or (key[0] == "finished" and not state.ledger.closed)
        }
        offsets = dict(self.position)
        for source in self.held.values():
            offsets[source.tp] = min(offsets[source.tp], source.offset)
        return offsets

    async def commit(self, out: list[Event], *, force: bool = False) -> None:
        """Publish ``out``, the dead letters and the offsets in one transaction."""
        if not out and not self.letters and not force:
            return
        sent = self._sent(out)
        cfg = self.manager.config
        try:
            async with kafka.transaction(self.producer):
                for record, reason in self.letters:
                    await self.dead.send(record, reason)
                ledger = [e for e in out if not isinstance(e, StepCompleted | ServiceReady)]
                clock = [e for e in out if isinstance(e, StepCompleted | ServiceReady)]
                await kafka.publish(self.producer, PORTFOLIO_EVENTS.name, cfg.portfolio_id, ledger)
                await kafka.publish(self.producer, SIM_CLOCK.name, cfg.run_id, clock)
                await self.producer.send_offsets_to_transaction(self._offsets(), self.group)
        except BaseException:
            await self.dead.discard()
            raise
        await self.dead.flush()
        self.letters = []
        if out:
            self.manager.metrics.observe(out, self.manager.state.ledger)
            self._observe_latency(out, sent)

    def _sent(self, out: list[Event]) -> dict[tuple[str, int, str], int]:
        """When the bars and actions that ``out`` decides were sent (read before the commit)."""
        sent: dict[tuple[str, int, str], int] = {}
        for event in out:
            if isinstance(event, DecisionRecorded):
                for kind in ("bar", "action"):
                    source = self.held.get((kind, event.step, event.symbol))
                    if source is not None:
                        sent[(kind, event.step, event.symbol)] = source.sent_ms
        return sent

    def _observe_latency(self, out: list[Event], sent: dict[tuple[str, int, str], int]) -> None:
        now = int(time.time() * 1000)
        latency = self.manager.latency
        for event in out:
            if isinstance(event, DecisionRecorded):
                bar = sent.get(("bar", event.step, event.symbol))
                action = sent.get(("action", event.step, event.symbol))
                if bar:
                    latency.observe("bar_to_decision", bar, now)
                if action:
                    latency.observe("action_to_decision", action, now)
            elif isinstance(event, DecisionMissed):
                latency.missed.inc()
            elif isinstance(event, ActionLate):
                latency.late.inc()


async def main() -> PortfolioState:
    """Entry point of the service process."""
    return await PortfolioManager(KafkaConfig(), RulesConfig().rules(), PortfolioConfig()).serve()
