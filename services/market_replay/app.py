"""Market replay loop (lockstep): emit every bar of step t, wait for the step to complete.

Before the first step it waits until every service named in ``wait_for`` has
announced itself ready on ``sim.clock``, so no bar is published before its
consumers listen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Literal

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
    mode: Literal["lockstep"] = "lockstep"
    """Replay mode; lockstep waits for each step to complete."""
    wait_for: tuple[str, ...] = ("portfolio-manager", "symbol-agent")
    """Services that must be ready before the first bar."""
    ready_timeout_s: PositiveFloat = 120.0
    step_timeout_s: PositiveFloat = 120.0
    progress: bool = False
    """Show a progress bar on stderr."""
    metrics_port: int = Field(9101, ge=0, le=65535)
    """Port of /metrics on 127.0.0.1 (0: none)."""


class ReplayTimeout(RuntimeError):
    """A step or the start of the run did not complete in time."""


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


def _completes(step: int, event: Event) -> bool:
    return isinstance(event, StepCompleted) and event.step == step


class MarketReplay:
    """Replays one span of bars for one run."""

    def __init__(self, config: KafkaConfig, replay: ReplayConfig, frame: BarFrame) -> None:
        self.config = config
        self.replay = replay
        self.frame = frame
        self.service_metrics = ServiceMetrics(SERVICE)
        self.metrics = ReplayMetrics(self.service_metrics.registry)

    async def serve(self) -> float:
        """Replay every step; return the seconds the steps took."""
        cfg, frame = self.config, self.frame
        producer = kafka.producer(cfg.bootstrap, SERVICE)
        clock = kafka.consumer(cfg.bootstrap, SERVICE)
        await kafka.start(producer, cfg.bootstrap)
        try:
            await kafka.start(clock, cfg.bootstrap)
            try:
                await kafka.assign(clock, [SIM_CLOCK.name], from_beginning=True)
                dead_letters = kafka.DeadLetters(producer, SERVICE, self.service_metrics)
                self.service_metrics.serve(self.replay.metrics_port)
                waiting = set(self.replay.wait_for)

                def all_ready(event: Event) -> bool:
                    if isinstance(event, ServiceReady):
                        waiting.discard(event.service)
                    return not waiting

                await self._until(
                    clock,
                    dead_letters,
                    self.replay.ready_timeout_s,
                    all_ready,
                    f"services {sorted(waiting)} did not report ready",
                )
                started = ReplayStarted(
                    event_id=event_id(cfg.run_id, -1, "replay-started"),
                    cause_id=cfg.run_id,
                    run_id=cfg.run_id,
                    event_time=int(frame.timestamps[0]),
                    symbols=frame.symbols,
                    steps_total=frame.n_steps,
                    dataset=self.replay.dataset,
                    mode=self.replay.mode,
                )
                await kafka.publish(producer, SIM_CLOCK.name, cfg.run_id, [started])
                began = time.perf_counter()
                steps = range(frame.n_steps)
                for step in tqdm(
                    steps, desc="replay", unit="step", disable=not self.replay.progress
                ):
                    step_began = time.perf_counter()
                    bars = step_bars(frame, cfg.run_id, step)
                    await kafka.publish_keyed(
                        producer, MARKET_BARS.name, [(b.symbol, b) for b in bars]
                    )
                    await self._until(
                        clock,
                        dead_letters,
                        self.replay.step_timeout_s,
                        partial(_completes, step),
                        f"step {step} was not completed by the portfolio manager",
                    )
                    self.metrics.step_seconds.observe(time.perf_counter() - step_began)
                    self.metrics.steps.inc()
                    self.metrics.bars.inc(len(bars))
                    self.metrics.progress.set((step + 1) / frame.n_steps)
                elapsed = time.perf_counter() - began
                finished = ReplayFinished(
                    event_id=event_id(cfg.run_id, frame.n_steps, "replay-finished"),
                    cause_id=event_id(cfg.run_id, frame.n_steps - 1, "completed"),
                    run_id=cfg.run_id,
                    event_time=int(frame.timestamps[-1]),
                    steps=frame.n_steps,
                )
                await kafka.publish(producer, SIM_CLOCK.name, cfg.run_id, [finished])
                log.info(
                    "replayed %d steps, %d bars in %.2fs (%.1f steps/s)",
                    frame.n_steps,
                    int(frame.present.sum()),
                    elapsed,
                    frame.n_steps / elapsed,
                )
                return elapsed
            finally:
                await clock.stop()
        finally:
            await producer.stop()

    async def _until(
        self,
        clock: kafka.AIOKafkaConsumer,
        dead_letters: kafka.DeadLetters,
        timeout_s: float,
        done: Callable[[Event], bool],
        problem: str,
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            for item in await kafka.poll(clock, dead_letters, timeout_ms=50):
                event = item.event
                if isinstance(event, Event) and event.run_id == self.config.run_id and done(event):
                    return
            if time.monotonic() > deadline:
                raise ReplayTimeout(f"{problem} within {timeout_s:.0f}s (run {self.config.run_id})")


async def main() -> float:
    """Entry point of the service process."""
    replay = ReplayConfig()
    return await MarketReplay(KafkaConfig(), replay, load_span(replay)).serve()
