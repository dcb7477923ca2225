"""Symbol agent loop: bars and the step's account snapshot in, one batched policy call out.

For each step it waits for every bar of the step and the portfolio's
``AccountMarked`` snapshot, builds the observations of all its symbols with
``core.features``, calls the policy once for the whole batch, smooths with
``core.actions.smooth`` and publishes one ``ActionDecided`` per symbol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError
from pydantic import Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.actions import SmoothingState, classify, smooth
from core.events import (
    AccountMarked,
    ActionDecided,
    BarClosed,
    DecisionMissed,
    DecisionRecorded,
    Event,
    ModelPublished,
    PortfolioClosed,
    PortfolioOpened,
    ReplayStarted,
    event_id,
    service_ready,
)
from core.features import HISTORY, observe_window
from core.rules import TradingRules
from core.step import PACED, bar_problem, bars_complete
from rl_agents.policies import Policy, make_policy
from services import kafka
from services.config import KafkaConfig, RulesConfig
from services.errors import RunClosed
from services.latency import LatencyMetrics
from services.metrics import ServiceMetrics
from services.models import FLEET
from services.symbol_agent.metrics import AgentMetrics
from streams.topics import AGENT_ACTIONS, AGENT_MODELS, MARKET_BARS, PORTFOLIO_EVENTS, SIM_CLOCK

SERVICE = "symbol-agent"
log = logging.getLogger(SERVICE)
FloatArray = npt.NDArray[np.float64]


class AgentConfig(BaseSettings):
    """Symbol-agent settings (``TRADINGBOT_AGENT_*``)."""

    model_config = SettingsConfigDict(env_prefix="TRADINGBOT_AGENT_", frozen=True, extra="ignore")

    policy: str = "momentum"
    """Name of the policy to serve."""
    window: PositiveInt = 10
    """Bars of features in an observation."""
    metrics_port: int = Field(9102, ge=0, le=65535)
    """Port of /metrics on 127.0.0.1 (0: none)."""
    fleet: Literal["single", "mixed"] = "single"
    """``mixed`` serves ``collapsed_policy`` to every ``collapsed_every``-th symbol."""
    collapsed_policy: str = "always-buy-small"
    """The deliberately collapsed policy of a mixed fleet."""
    collapsed_every: PositiveInt = 10
    model_id: str = FLEET
    """Key on agent.models of the model these agents serve (published or rolled back)."""
    """In a mixed fleet, symbols 0, k, 2k, ... (alphabetical order) get the collapsed policy."""


@dataclass
class BarWindow:
    """The last ``rows`` bars of every symbol, oldest first (``[rows, n]`` arrays)."""

    rows: int
    n: int
    ohlcv: FloatArray = field(init=False)
    present: npt.NDArray[np.bool_] = field(init=False)

    def __post_init__(self) -> None:
        self.ohlcv = np.full((5, self.rows, self.n), np.nan)
        self.present = np.zeros((self.rows, self.n), dtype=np.bool_)

    def push(self, index: dict[str, int], bars: dict[str, BarClosed]) -> None:
        """Append one step's bars; symbols without a bar are marked absent."""
        self.ohlcv = np.roll(self.ohlcv, -1, axis=1)
        self.present = np.roll(self.present, -1, axis=0)
        self.ohlcv[:, -1, :] = np.nan
        self.present[-1, :] = False
        for symbol, bar in bars.items():
            j = index[symbol]
            self.ohlcv[:, -1, j] = (bar.open, bar.high, bar.low, bar.close, bar.volume)
            self.present[-1, j] = True


class SymbolAgent:
    """Serves one policy for all symbols of a run."""

    def __init__(
        self,
        config: KafkaConfig,
        agent: AgentConfig,
        rules: TradingRules,
        policy: Policy | None = None,
    ) -> None:
        self.config = config
        self.agent = agent
        self.rules = rules
        self.policy: Policy = policy or make_policy(agent.policy, window=agent.window)
        self.collapsed: Policy = make_policy(agent.collapsed_policy, window=agent.window)
        self.policy_of: list[Policy] = []
        self.symbols: tuple[str, ...] = ()
        self.index: dict[str, int] = {}
        self.window = BarWindow(agent.window + HISTORY, 0)
        self.smoothing = SmoothingState.empty(0, rules.smoothing_window)
        self.bars: dict[int, dict[str, BarClosed]] = defaultdict(dict)
        self.decided_bars: dict[str, BarClosed] = {}
        self.snapshots: dict[int, AccountMarked] = {}
        self.next_step = 0
        self.closed = False
        self.opened_by = ""
        self._reset()
        self.service_metrics = ServiceMetrics(SERVICE)
        self.metrics = AgentMetrics(self.service_metrics.registry)
        self.latency = LatencyMetrics(self.service_metrics.registry)
        self.sent_ms: dict[int, int] = {}
        """Per step: when its bars were sent (the latest bar's timestamp)."""
        self.owned: list[TopicPartition] = []
        """The partitions of market.bars this member of the agents' group reads."""
        self.reassigned = False
        """The group gave this member other partitions: rebuild before deciding again."""
        self.run_start: dict[TopicPartition, int] = {}
        self.reading: list[TopicPartition] = []
        self.launched_ms = time.time_ns() // 1_000_000
        """When this agent was launched: a run that closes later is one it took part in."""

    async def serve(self) -> None:
        """Run until this run's portfolio is closed; resume from the run's start after a crash."""
        self.service_metrics.serve(self.agent.metrics_port, "TRADINGBOT_AGENT_METRICS_PORT")
        await kafka.resilient(self._serve_once, SERVICE)

    def _reset(self) -> None:
        self.symbols = ()
        self.index = {}
        self.started: dict[str, ReplayStarted] = {}
        self.spec: ReplayStarted | None = None
        self.early: list[kafka.Decoded] = []
        self.bars = defaultdict(dict)
        self.snapshots = {}
        self.next_step = 0
        self.closed = False
        self.closed_ms = 0
        """When the run's ``PortfolioClosed`` was written (its record's timestamp)."""
        self.recorded: dict[int, dict[str, float]] = defaultdict(dict)
        """Per step not yet decided here: the raw actions the ledger recorded for it."""
        self.decided_steps: set[int] = set()
        """Steps not yet decided here that the ledger has decided (a rebuild's history)."""
        self.bars_end: dict[int, dict[TopicPartition, int]] = {}
        self.marks_read = -1
        """The last step marked in the history the last rebuild read."""

    async def _serve_once(self) -> None:
        cfg = self.config
        self._reset()
        bookmark = f"tradingbot-agent-{cfg.run_id}"
        """Where the run begins on every input (committed once, never moved)."""
        members = f"tradingbot-agents-{cfg.run_id}"
        """The consumer group whose members share the partitions of market.bars."""
        producer = kafka.producer(cfg.bootstrap, SERVICE)
        await kafka.start(producer, cfg.bootstrap)
        try:
            consumer = kafka.consumer(cfg.bootstrap, SERVICE, group_id=bookmark)
            await kafka.start(consumer, cfg.bootstrap)
            bars = kafka.group_consumer(cfg.bootstrap, SERVICE, group_id=members)
            await kafka.start(bars, cfg.bootstrap)
            try:
                await self._serve_with(producer, consumer, bars)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # stopped from outside
                # aiokafka cancels a group member's waits when it loses the coordinator.
                raise kafka.BrokerError("the agents' consumer group lost its coordinator") from None
            finally:
                await kafka.stop(bars)
                await kafka.stop(consumer)
        finally:
            await kafka.stop(producer)

    async def _serve_with(
        self,
        producer: kafka.AIOKafkaProducer,
        consumer: kafka.AIOKafkaConsumer,
        bars: kafka.AIOKafkaConsumer,
    ) -> None:
        cfg = self.config
        # The model to serve: the latest on agent.models, then live updates.
        for event in await kafka.read_topic(cfg.bootstrap, AGENT_MODELS.name):
            if isinstance(event, ModelPublished) and event.agent_id == self.agent.model_id:
                await self._load(event)
        partitions = await kafka.assign(
            consumer,
            [
                SIM_CLOCK.name,
                MARKET_BARS.name,
                PORTFOLIO_EVENTS.name,
                AGENT_MODELS.name,
            ],
        )
        # The bars are read by the group member; the bookmark only keeps their start.
        consumer.pause(*[tp for tp in partitions if tp.topic == MARKET_BARS.name])
        inputs = [tp for tp in partitions if tp.topic != AGENT_MODELS.name]
        start = await kafka.committed(consumer, inputs)
        if len(start) < len(inputs):
            # The first start of the run: remember where it begins.
            here = await self._run_begins(consumer, inputs)
            await consumer.commit({**here, **start})
            start = {**here, **start}
        self.run_start = start
        self.reading = [tp for tp in inputs if tp.topic != MARKET_BARS.name]
        bars.subscribe([MARKET_BARS.name], listener=_Shares(self, bars))
        dead = kafka.DeadLetters(producer, SERVICE, self.service_metrics)
        lag = asyncio.ensure_future(self.service_metrics.track_lag(consumer))
        ready = False
        try:
            while not self.closed:
                if self.reassigned:
                    await self._rebuild(consumer, bars, dead)
                    if not self.reassigned:
                        # Decide what the history allows before any live record is judged.
                        await self._decide_ready_steps(producer, bars)
                    if self.closed and not ready:
                        if self.closed_ms >= self.launched_ms:
                            # Launched while the run was open; the group gave it bars too late.
                            log.info("run %s closed while this member joined", cfg.run_id)
                            return
                        raise RunClosed(
                            f"run {cfg.run_id} is already closed; start a new run id "
                            "(TRADINGBOT_RUN_ID)"
                        )
                    if not ready:
                        await self._announce(producer)
                        ready = True
                    continue
                for item in await kafka.poll_many([consumer, bars], dead):
                    await self._take_record(item, dead, live=True)
                if ready and not self.reassigned:
                    await self._decide_ready_steps(producer, bars)
                await dead.flush()
        finally:
            lag.cancel()

    async def _run_begins(
        self, consumer: kafka.AIOKafkaConsumer, inputs: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Where the run begins on ``inputs``: here, or where its replay started if it has.

        An agent normally starts before the replay (which waits for it); one
        that starts later (a paced run does not wait) reads from the records
        sent since the run's ``ReplayStarted``.
        """
        cfg = self.config
        expected = event_id(cfg.run_id, -1, "replay-started")
        began = await kafka.sent_at(
            cfg.bootstrap,
            SIM_CLOCK.name,
            lambda e: isinstance(e, ReplayStarted) and e.event_id == expected,
        )
        here = {tp: await consumer.position(tp) for tp in inputs}
        if began is None:
            return here
        # A second of slack for the clocks of the other producers of the run.
        found = await consumer.offsets_for_times({tp: max(0, began - 1000) for tp in inputs})
        return {tp: found[tp].offset if found.get(tp) is not None else here[tp] for tp in inputs}

    async def _announce(self, producer: kafka.AIOKafkaProducer) -> None:
        run_id = self.config.run_id
        await kafka.publish(producer, SIM_CLOCK.name, run_id, [service_ready(run_id, SERVICE)])

    async def _rebuild(
        self,
        consumer: kafka.AIOKafkaConsumer,
        bars: kafka.AIOKafkaConsumer,
        dead: kafka.DeadLetters,
    ) -> None:
        """Fold the run again from its start for the bar partitions this member now owns."""
        self.reassigned = False
        owned = self.owned
        self._reset()
        self.owned = owned
        for tp in self.reading:
            consumer.seek(tp, self.run_start[tp])
        for tp in owned:
            # Again here: an earlier rebuild, cut short, may have read past the start.
            bars.seek(tp, self.run_start[tp])
        end = {
            **await consumer.end_offsets(self.reading),
            **(await bars.end_offsets(owned) if owned else {}),
        }
        await self._catch_up(consumer, bars, dead, end)
        self.marks_read = -1 if self.reassigned else max(self.snapshots, default=-1)
        log.info(
            "serving %d of %d bar partitions of run %s (%d steps decided on the ledger)",
            len(owned),
            MARKET_BARS.partitions,
            self.config.run_id,
            len(self.decided_steps),
        )

    async def _catch_up(
        self,
        consumer: kafka.AIOKafkaConsumer,
        bars: kafka.AIOKafkaConsumer,
        dead: kafka.DeadLetters,
        end: dict[TopicPartition, int],
    ) -> None:
        """Fold the run's history up to ``end``: bars, snapshots and the ledger's decisions."""
        items: list[kafka.Decoded] = []

        async def behind() -> bool:
            try:
                for tp, offset in end.items():
                    client = bars if tp.topic == MARKET_BARS.name else consumer
                    if await client.position(tp) < offset:
                        return True
            except IllegalStateError:
                return False  # a partition was taken away meanwhile: rebuild again
            return False

        while not self.reassigned and await behind():
            items.extend(await kafka.poll_many([consumer, bars], dead))
        for item in items:
            await self._take_record(item, dead, live=False)
        await dead.flush()

    async def _take_record(
        self, item: kafka.Decoded, dead: kafka.DeadLetters, *, live: bool
    ) -> None:
        event = item.event
        if isinstance(event, ModelPublished):
            if event.agent_id == self.agent.model_id:
                problem = await self._load(event)
                if problem is not None:
                    await dead.send(item.record, problem)
            return
        if not isinstance(event, Event) or event.run_id != self.config.run_id:
            return
        if isinstance(event, ReplayStarted):
            if event.event_id == event_id(self.config.run_id, -1, "replay-started"):
                self.started.setdefault(event.event_id, event)
                await self._open_if_ready(dead, live)
        elif isinstance(event, PortfolioOpened):
            self._open(event)
            await self._open_if_ready(dead, live)
        elif isinstance(event, BarClosed):
            if self.spec is None:
                self.early.append(item)
                return
            problem = self._bar_problem(event, self.spec, live)
            if problem is not None:
                await dead.send(item.record, problem)
            elif live:
                sent = item.record.timestamp
                self.sent_ms[event.step] = max(self.sent_ms.get(event.step, 0), sent)
        elif isinstance(event, AccountMarked):
            self.snapshots[event.step] = event
        elif isinstance(event, DecisionRecorded | DecisionMissed):
            if event.step >= self.next_step and self.owned:  # a step still to fold here
                self.decided_steps.add(event.step)
                if isinstance(event, DecisionRecorded):
                    self.recorded[event.step][event.symbol] = event.raw
        elif isinstance(event, PortfolioClosed):
            self.closed = True
            self.closed_ms = item.record.timestamp

    def _open(self, opened: PortfolioOpened) -> None:
        if self.symbols:
            return
        self.symbols = opened.symbols
        self.opened_by = opened.cause_id
        self.index = {s: i for i, s in enumerate(opened.symbols)}
        self.window = BarWindow(self.agent.window + HISTORY, len(opened.symbols))
        self.smoothing = SmoothingState.empty(len(opened.symbols), self.rules.smoothing_window)
        self.policy_of = [self._assign(j) for j in range(len(opened.symbols))]

    async def _open_if_ready(self, dead: kafka.DeadLetters, live: bool) -> None:
        """Once the portfolio is open, take the start it was opened from and the early bars."""
        if self.spec is not None or not self.symbols:
            return
        started = self.started.get(self.opened_by)
        if started is None or started.symbols != self.symbols:
            return
        self.spec = started
        early, self.early = self.early, []
        for item in early:
            await self._take_record(item, dead, live=live)

    def _bar_problem(self, bar: BarClosed, spec: ReplayStarted, live: bool) -> str | None:
        """Take a bar into its step, or say why not (``core.step.bar_problem`` and the step)."""
        problem = bar_problem(bar, spec)
        if problem is not None:
            return problem
        existing = self.bars.get(bar.step, {}).get(bar.symbol)
        if existing is None and bar.step == self.next_step - 1:
            existing = self.decided_bars.get(bar.symbol)
            if existing is None:
                return f"late: step {bar.step} is decided"
        if existing is not None:
            if existing == bar:
                self.service_metrics.redelivered.labels(SERVICE, MARKET_BARS.name).inc()
                return None
            return f"conflicts with the bar of {bar.symbol} at step {bar.step} already taken"
        if bar.step < self.next_step:
            return f"late: step {bar.step} is decided (the agent is at step {self.next_step})"
        if live and bar.step > self.next_step and spec.mode != PACED:
            return f"step {bar.step} is not open (the agent is at step {self.next_step})"
        self.bars[bar.step][bar.symbol] = bar
        return None

    async def _bars_in(self, step: int, consumer: kafka.AIOKafkaConsumer) -> bool:
        """Whether this member has read every bar of ``step`` on its partitions.

        Called once the step's mark is in: the portfolio manager marks a step
        after reading all its bars, so they are all on the log below the end
        offsets taken now.
        """
        if step <= self.marks_read:
            return True  # marked before the rebuild read the partitions to their end
        end = self.bars_end.get(step)
        if end is None:
            end = self.bars_end[step] = await consumer.end_offsets(self.owned)
        try:
            for tp, offset in end.items():
                if await consumer.position(tp) < offset:
                    return False
        except IllegalStateError:
            return False  # a partition was taken away meanwhile: a rebuild follows
        return True

    async def _decide_ready_steps(
        self, producer: kafka.AIOKafkaProducer, consumer: kafka.AIOKafkaConsumer
    ) -> None:
        while self.symbols and self.spec is not None and self.owned:
            step = self.next_step
            bars = self.bars.get(step, {})
            snapshot = self.snapshots.get(step)
            if snapshot is None:
                return
            if not bars_complete(bars) and not await self._bars_in(step, consumer):
                return
            self.bars_end.pop(step, None)
            recorded = self.recorded.pop(step, {})
            decided = step in self.decided_steps
            self.decided_steps.discard(step)
            if not bars:  # none of this member's symbols had a bar at this step
                self.window.push(self.index, {})
                self.snapshots.pop(step)
                self.next_step += 1
                continue
            actions = self.decide(step, bars, snapshot, recorded)
            # A step the ledger has decided is history: folded, never answered again. Every
            # other step is answered in full; a copy of an action already sent is a no-op
            # for the portfolio manager.
            missing = [] if decided else actions
            sent = self.sent_ms.pop(step, 0)
            if missing:
                await kafka.publish_keyed(
                    producer, AGENT_ACTIONS.name, [(a.symbol, a) for a in missing]
                )
                if sent:
                    now = int(time.time() * 1000)
                    for _ in missing:
                        self.latency.observe("bar_to_action", sent, now)
            self.decided_bars = self.bars.pop(step)
            self.snapshots.pop(step)
            self.next_step += 1

    async def _load(self, model: ModelPublished) -> str | None:
        """Serve ``model`` from the next step on (an empty checkpoint: the baseline).

        Return why it cannot be served (the current policy stays), or None.
        The checkpoint is read (and torch first imported, 8 s on a small box)
        in a worker thread: the event loop goes on heartbeating the group, so
        a slow or hostile model never costs the agent its group session.
        Records are still taken in order: this one waits for its model.
        """
        name = f"sac:{model.checkpoint}" if model.checkpoint else self.agent.policy
        try:
            self.policy = await asyncio.to_thread(make_policy, name, window=self.agent.window)
        except Exception as e:  # noqa: BLE001 - a bad model must not stop the agent
            log.error("cannot serve %s (%s): keeping %s", model.version, e, self.policy.version)
            return f"cannot serve model {model.version[:200]!r}: {str(e)[:500]}"
        log.info("serving %s %s (%s)", self.policy.name, self.policy.version, model.reason)
        if self.symbols:
            self.policy_of = [self._assign(j) for j in range(len(self.symbols))]
        return None

    def _assign(self, j: int) -> Policy:
        mixed = self.agent.fleet == "mixed" and j % self.agent.collapsed_every == 0
        return self.collapsed if mixed else self.policy

    def decide(
        self,
        step: int,
        bars: dict[str, BarClosed],
        snapshot: AccountMarked,
        recorded: dict[str, float] | None = None,
    ) -> list[ActionDecided]:
        """One batched policy call for every symbol with a bar at ``step``.

        ``recorded`` holds the raw actions the ledger recorded for this step (a
        step decided before a restart or a rebalance): they are the ones
        smoothed, so the agent goes on exactly as the portfolio manager saw it,
        whatever model it serves now. Only the ledger says what this agent
        sent: a record on ``agent.actions`` may be anyone's.
        """
        self.window.push(self.index, bars)
        n = len(self.symbols)
        quantity = np.zeros(n)
        cost = np.zeros(n)
        for holding in snapshot.holdings:
            j = self.index[holding.symbol]
            quantity[j] = holding.quantity
            cost[j] = holding.cost
        o, h, lo, c, v = self.window.ohlcv
        obs = observe_window(
            open_px=o,
            high=h,
            low=lo,
            close=c,
            volume=v,
            present=self.window.present,
            window=self.agent.window,
            quantity=quantity,
            cost=cost,
            cash=snapshot.cash,
            equity=snapshot.equity,
        )
        began = time.perf_counter()
        raw = np.empty(n)
        for policy in {id(p): p for p in self.policy_of}.values():
            rows = np.array([p is policy for p in self.policy_of])
            raw[rows] = policy.act(obs[rows])
        self.metrics.latency.observe(time.perf_counter() - began)
        self.metrics.batch_size.observe(len(obs))
        for symbol, value in (recorded or {}).items():
            if symbol in self.index:
                raw[self.index[symbol]] = value
        active = self.window.present[-1]
        self.smoothing, smoothed = smooth(self.smoothing, raw, active)
        for kind, count in zip(
            ("hold", "buy", "sell"),
            np.bincount(classify(smoothed[active], self.rules.hold_threshold), minlength=3),
            strict=True,
        ):
            self.metrics.actions.labels(kind).inc(int(count))
        event_time = next(iter(bars.values())).event_time
        return [
            ActionDecided(
                event_id=event_id(self.config.run_id, step, "action", symbol),
                cause_id=bars[symbol].event_id,
                run_id=self.config.run_id,
                event_time=event_time,
                symbol=symbol,
                step=step,
                raw=float(np.clip(raw[j], -1.0, 1.0)),
                smoothed=float(smoothed[j]),
                policy=self.policy_of[j].name,
                policy_version=self.policy_of[j].version,
            )
            for j, symbol in enumerate(self.symbols)
            if active[j]
        ]


class _Shares(ConsumerRebalanceListener):
    """Follows the partitions of market.bars that the group gives this member."""

    def __init__(self, agent: SymbolAgent, consumer: kafka.AIOKafkaConsumer) -> None:
        self.agent = agent
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.agent.owned = []
        self.agent.reassigned = True

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self.consumer.seek(tp, self.agent.run_start[tp])
        self.agent.owned = sorted(assigned)
        self.agent.reassigned = True


async def main() -> None:
    """Entry point of the service process."""
    await SymbolAgent(KafkaConfig(), AgentConfig(), RulesConfig().rules()).serve()
