"""Market replay loop: lockstep (emit step t, wait for it to complete) or paced.

Lockstep, the default and what evaluation uses, waits for every step to
complete before the next step's bars. Paced emits each step's bars on their
own schedule, ``speed`` times faster than the market did (``1x``, ``60x``) or
back to back (``max``); the agents' actions are due by the next step's bars
(``core.step``). Either way the replay is never more than ``max_lead`` steps
ahead of the last completed step, so a slow pipeline slows the replay down
(``tradingbot_replay_behind_schedule_seconds``) instead of queueing without
bound.

Before the first step it waits until every service named in ``wait_for`` has
announced itself ready on ``sim.clock``, so no bar is published before its
consumers listen.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from aiokafka import TopicPartition
from pydantic import Field, PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict
from tqdm import tqdm

from core.bars import BarFrame
from core.events import (
    BarClosed,
    Event,
    ReplayFinished,
    ReplayStarted,
    ServiceReady,
    StepCompleted,
    event_id,
)
from rl_agents.data import BYTETHEORY, DEFAULT_UNIVERSE, load_bars, universe
from services import kafka
from services.config import KafkaConfig
from services.errors import Refusal, RunClosed
from services.market_replay.metrics import ReplayMetrics
from services.metrics import ServiceMetrics
from streams.topics import MARKET_BARS, SIM_CLOCK

SERVICE = "market-replay"
log = logging.getLogger(SERVICE)


class ReplayConfig(BaseSettings):
    """Replay settings (``TRADINGBOT_REPLAY_*``)."""

    model_config = SettingsConfigDict(env_prefix="TRADINGBOT_REPLAY_", frozen=True, extra="ignore")

    dataset: str = BYTETHEORY
    """``bytetheory`` (bundled daily bars) or a CSV / CSV.gz of the shared layout."""
    symbols: PositiveInt = DEFAULT_UNIVERSE
    """The first N symbols (alphabetically) with a bar at every step of the span."""
    start: int = Field(0, ge=0)
    """First timestamp of the span (index into the data set's timestamps)."""
    steps: PositiveInt | None = None
    """Number of timestamps to replay (all remaining when unset)."""
    min_coverage: float = Field(1.0, gt=0, le=1)
    """Share of the span's timestamps a symbol needs a bar at (1: every one)."""
    mode: Literal["lockstep", "paced"] = "lockstep"
    """Replay mode: lockstep waits for each step to complete; paced keeps the bars' schedule."""
    speed: str = Field("max", pattern=r"^(max|[0-9]+(\.[0-9]+)?x)$")
    """Paced mode: ``max`` (no waiting) or a multiple of real time such as ``1x`` or ``60x``."""
    max_lead: PositiveInt = 8
    """Paced mode: most steps published ahead of the last completed one (flow control)."""
    wait_for: tuple[str, ...] = ("portfolio-manager", "symbol-agent")
    """Services that must be ready before the first bar."""
    ready_timeout_s: PositiveFloat = 120.0
    step_timeout_s: PositiveFloat = 120.0
    progress: bool = False
    """Show a progress bar on stderr."""
    metrics_port: int = Field(9101, ge=0, le=65535)
    """Port of /metrics on 127.0.0.1 (0: none)."""


class ReplayTimeout(Refusal):
    """A step or the start of the run did not complete in time."""

    exit_code = 4


def speed_factor(speed: str) -> float | None:
    """``60x`` -> 60.0; ``max`` -> None (no schedule)."""
    if speed == "max":
        return None
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)x", speed)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"speed {speed!r} is neither 'max' nor a positive multiple like '60x'")
    return float(match.group(1))


def load_span(config: ReplayConfig) -> BarFrame:
    """The bars this replay emits."""
    return universe(
        load_bars(config.dataset),
        config.symbols,
        start=config.start,
        steps=config.steps,
        min_coverage=config.min_coverage,
    )


def step_bars(frame: BarFrame, run_id: str, step: int) -> list[BarClosed]:
    """The bars of one step, in symbol order."""
    present = frame.present[step]
    n_bars = int(present.sum())
    ts = int(frame.timestamps[step])
    return [
        BarClosed(
            event_id=event_id(run_id, step, "bar", symbol),
            cause_id=run_id,
            run_id=run_id,
            event_time=ts,
            symbol=symbol,
            step=step,
            steps_total=frame.n_steps,
            step_bars=n_bars,
            open=float(frame.open[step, j]),
            high=float(frame.high[step, j]),
            low=float(frame.low[step, j]),
            close=float(frame.close[step, j]),
            volume=float(frame.volume[step, j]),
        )
        for j, symbol in enumerate(frame.symbols)
        if present[j]
    ]


@dataclass
class _Clock:
    """What the replay knows of its run from sim.clock (a fold of the run's clock events)."""

    run_id: str
    waiting: set[str]
    expected_start: ReplayStarted
    expected_finish: ReplayFinished
    started: bool = False
    completed: int = -1
    finished: bool = False
    published: int | None = None
    """The last step whose bars this instance published (None: none yet, or history)."""
    ends: dict[int, StepCompleted] = field(default_factory=dict)
    """The accepted end of every step, to tell a redelivery from a conflicting copy."""

    def problem(self, event: Event) -> str | None:
        """Take one clock event of the run; return why it is refused, or None."""
        if isinstance(event, ServiceReady):
            self.waiting.discard(event.service)
        elif isinstance(event, ReplayStarted):
            if event != self.expected_start:
                return "conflicts with this replay's ReplayStarted of the run"
            self.started = True
        elif isinstance(event, StepCompleted):
            return self._completed(event)
        elif isinstance(event, ReplayFinished):
            if event != self.expected_finish:
                return "conflicts with this replay's ReplayFinished of the run"
            self.finished = True
        return None

    def _completed(self, event: StepCompleted) -> str | None:
        if event.event_id != event_id(self.run_id, event.step, "completed"):
            return f"event id {event.event_id[:200]!r} is not the id of step {event.step}'s end"
        if event.step < 0:
            return f"step {event.step} is outside the run"
        accepted = self.ends.get(event.step)
        if accepted is not None:
            return None if event == accepted else f"conflicts with the end of step {event.step}"
        if event.step <= self.completed:
            return f"late: step {event.step} is complete"
        if event.step != self.completed + 1:
            return f"step {event.step} completed ahead of step {self.completed + 1}"
        if self.published is not None and event.step > self.published:
            return f"step {event.step} completed before its bars were published"
        self.completed = event.step
        self.ends[event.step] = event
        return None


class MarketReplay:
    """Replays one span of bars for one run; resumes where the run's clock stands."""

    def __init__(self, config: KafkaConfig, replay: ReplayConfig, frame: BarFrame) -> None:
        self.config = config
        self.replay = replay
        self.frame = frame
        self.service_metrics = ServiceMetrics(SERVICE)
        self.metrics = ReplayMetrics(self.service_metrics.registry)

    async def serve(self) -> float:
        """Replay every step not yet completed; return the seconds the steps took."""
        self.service_metrics.serve(self.replay.metrics_port, "TRADINGBOT_REPLAY_METRICS_PORT")
        return await kafka.resilient(self._serve_once, SERVICE)

    async def _serve_once(self) -> float:
        cfg, frame = self.config, self.frame
        producer = kafka.producer(cfg.bootstrap, SERVICE)
        await kafka.start(producer, cfg.bootstrap)
        try:
            consumer = kafka.consumer(cfg.bootstrap, SERVICE)
            await kafka.start(consumer, cfg.bootstrap)
            try:
                partitions = await kafka.assign(consumer, [SIM_CLOCK.name], from_beginning=True)
                end = await consumer.end_offsets(partitions)
                clock = _Clock(
                    cfg.run_id, set(self.replay.wait_for), self._started(), self._finished()
                )
                dead = kafka.DeadLetters(producer, SERVICE, self.service_metrics)
                await self._drain(consumer, dead, clock, end)
                if clock.finished:
                    raise RunClosed(
                        f"the replay of run {cfg.run_id} already finished; "
                        "start a new run id (TRADINGBOT_RUN_ID)"
                    )
                if not clock.started:
                    await self._until(
                        consumer,
                        dead,
                        clock,
                        self.replay.ready_timeout_s,
                        lambda: not clock.waiting,
                        lambda: f"services {sorted(clock.waiting)} did not report ready",
                    )
                    await kafka.publish(producer, SIM_CLOCK.name, cfg.run_id, [self._started()])
                elif clock.completed >= 0:
                    log.info("resuming run %s after step %d", cfg.run_id, clock.completed)
                began = time.perf_counter()
                first = clock.completed + 1
                steps_iter = tqdm(
                    range(first, frame.n_steps),
                    desc="replay",
                    unit="step",
                    disable=not self.replay.progress,
                    initial=first,
                    total=frame.n_steps,
                )
                if self.replay.mode == "paced":
                    await self._paced(steps_iter, first, producer, consumer, dead, clock)
                else:
                    for step in steps_iter:
                        await self._step(step, producer, consumer, dead, clock)
                    await kafka.publish(producer, SIM_CLOCK.name, cfg.run_id, [self._finished()])
                elapsed = time.perf_counter() - began
                steps = frame.n_steps - first
                log.info(
                    "replayed %d steps, %d bars in %.2fs (%.1f steps/s)",
                    steps,
                    int(frame.present[first:].sum()),
                    elapsed,
                    steps / elapsed if elapsed > 0 else float("inf"),
                )
                return elapsed
            finally:
                await kafka.stop(consumer)
        finally:
            await kafka.stop(producer)

    def _started(self) -> ReplayStarted:
        cfg, frame = self.config, self.frame
        return ReplayStarted(
            event_id=event_id(cfg.run_id, -1, "replay-started"),
            cause_id=cfg.run_id,
            run_id=cfg.run_id,
            event_time=int(frame.timestamps[0]),
            symbols=frame.symbols,
            steps_total=frame.n_steps,
            dataset=self.replay.dataset,
            mode=self.replay.mode,
        )

    def _finished(self) -> ReplayFinished:
        cfg, frame = self.config, self.frame
        return ReplayFinished(
            event_id=event_id(cfg.run_id, frame.n_steps, "replay-finished"),
            cause_id=event_id(cfg.run_id, frame.n_steps - 1, "completed"),
            run_id=cfg.run_id,
            event_time=int(frame.timestamps[-1]),
            steps=frame.n_steps,
        )

    async def _step(
        self,
        step: int,
        producer: kafka.AIOKafkaProducer,
        consumer: kafka.AIOKafkaConsumer,
        dead: kafka.DeadLetters,
        clock: _Clock,
    ) -> None:
        began = time.perf_counter()
        bars = step_bars(self.frame, self.config.run_id, step)
        await kafka.publish_keyed(producer, MARKET_BARS.name, [(b.symbol, b) for b in bars])
        clock.published = step
        await self._until(
            consumer,
            dead,
            clock,
            self.replay.step_timeout_s,
            lambda: clock.completed >= step,
            lambda: f"step {step} was not completed by the portfolio manager",
        )
        self.metrics.step_seconds.observe(time.perf_counter() - began)
        self.metrics.steps.inc()
        self.metrics.bars.inc(len(bars))
        self.metrics.progress.set((step + 1) / self.frame.n_steps)

    async def _paced(
        self,
        steps: tqdm,
        first: int,
        producer: kafka.AIOKafkaProducer,
        consumer: kafka.AIOKafkaConsumer,
        dead: kafka.DeadLetters,
        clock: _Clock,
    ) -> None:
        """Publish each step at its due time (or at once), keeping at most ``max_lead`` ahead."""
        frame, replay = self.frame, self.replay
        speed = speed_factor(replay.speed)
        times = frame.timestamps.astype(np.int64)
        origin_wall = time.monotonic()
        origin = int(times[first])

        def due(event_time: int) -> float:
            if speed is None:
                return origin_wall
            return origin_wall + (event_time - origin) / 1e9 / speed

        for step in steps:
            await self._wait(consumer, dead, clock, due(int(times[step])), step)
            behind = time.monotonic() - due(int(times[step]))
            self.metrics.behind.set(max(0.0, behind) if speed is not None else 0.0)
            bars = step_bars(frame, self.config.run_id, step)
            await kafka.publish_keyed(producer, MARKET_BARS.name, [(b.symbol, b) for b in bars])
            clock.published = step
            self.metrics.steps.inc()
            self.metrics.bars.inc(len(bars))
            self.metrics.progress.set((step + 1) / frame.n_steps)
        # The last step's actions are due when its next bar would have come.
        gaps = np.diff(times)
        interval = int(np.median(gaps)) if gaps.size else 0
        end = frame.n_steps
        await self._wait(consumer, dead, clock, due(int(times[-1]) + interval), end)
        await kafka.publish(producer, SIM_CLOCK.name, self.config.run_id, [self._finished()])
        await self._until(
            consumer,
            dead,
            clock,
            replay.step_timeout_s,
            lambda: clock.completed >= end - 1,
            lambda: f"the run's last step {end - 1} was not completed by the portfolio manager",
        )

    async def _wait(
        self,
        consumer: kafka.AIOKafkaConsumer,
        dead: kafka.DeadLetters,
        clock: _Clock,
        at: float,
        step: int,
    ) -> None:
        """Until ``at`` (monotonic) has come and ``step`` is within ``max_lead`` of the clock."""
        lead = self.replay.max_lead
        deadline = time.monotonic() + self.replay.step_timeout_s
        while True:
            left = at - time.monotonic()
            if left <= 0 and step - clock.completed <= lead:
                return
            if left > 0 and step - clock.completed <= lead:
                # On schedule: read the clock while waiting (without sleeping past ``at``).
                await self._poll(
                    consumer, dead, clock, timeout_ms=max(1, min(50, int(left * 1000)))
                )
                continue
            await self._poll(consumer, dead, clock)
            if time.monotonic() > deadline:
                raise ReplayTimeout(
                    f"step {step - lead - 1} was not completed by the portfolio manager within "
                    f"{self.replay.step_timeout_s:.0f}s (run {self.config.run_id})"
                )

    async def _drain(
        self,
        consumer: kafka.AIOKafkaConsumer,
        dead: kafka.DeadLetters,
        clock: _Clock,
        end: dict[TopicPartition, int],
    ) -> None:
        """Fold the clock's history up to ``end`` (where a restarted replay resumes)."""
        deadline = time.monotonic() + self.replay.ready_timeout_s
        while any([await consumer.position(tp) < offset for tp, offset in end.items()]):
            await self._poll(consumer, dead, clock)
            if time.monotonic() > deadline:
                raise ReplayTimeout(f"could not read {SIM_CLOCK.name} to its end")

    async def _poll(
        self,
        consumer: kafka.AIOKafkaConsumer,
        dead: kafka.DeadLetters,
        clock: _Clock,
        timeout_ms: int = 50,
    ) -> None:
        for item in await kafka.poll(consumer, dead, timeout_ms=timeout_ms):
            event = item.event
            if isinstance(event, Event) and event.run_id == self.config.run_id:
                problem = clock.problem(event)
                if problem is not None:
                    await dead.send(item.record, problem)
        await dead.flush()

    async def _until(
        self,
        consumer: kafka.AIOKafkaConsumer,
        dead: kafka.DeadLetters,
        clock: _Clock,
        timeout_s: float,
        done: Callable[[], bool],
        problem: Callable[[], str],
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            await self._poll(consumer, dead, clock)
            if time.monotonic() > deadline:
                raise ReplayTimeout(
                    f"{problem()} within {timeout_s:.0f}s (run {self.config.run_id})"
                )


async def main() -> float:
    """Entry point of the service process."""
    replay = ReplayConfig()
    return await MarketReplay(KafkaConfig(), replay, load_span(replay)).serve()
