"""Portfolio manager loop: bars and actions in, ledger events out (docs/architecture.md).

The loop only decodes, calls ``core.portfolio``, folds the events with
``core.ledger.evolve``, encodes and publishes. On start it rebuilds its state
from its own ``portfolio.events``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.events import (
    ActionDecided,
    BarClosed,
    Event,
    ReplayStarted,
    ServiceReady,
    StepCompleted,
    event_id,
)
from core.ledger import PortfolioState, fold
from core.portfolio import (
    action_problem,
    close_run,
    fill_pending,
    mark,
    open_portfolio,
    record_decisions,
)
from core.rules import TradingRules
from services import kafka
from services.config import KafkaConfig, RulesConfig
from services.metrics import ServiceMetrics
from services.portfolio_manager.metrics import PortfolioMetrics
from streams.topics import AGENT_ACTIONS, MARKET_BARS, PORTFOLIO_EVENTS, SIM_CLOCK

SERVICE = "portfolio-manager"
log = logging.getLogger(SERVICE)


class PortfolioConfig(BaseSettings):
    """Portfolio-manager settings (``TRADINGBOT_PORTFOLIO_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="TRADINGBOT_PORTFOLIO_", frozen=True, extra="ignore"
    )

    metrics_port: int = Field(9103, ge=0, le=65535)
    """Port of /metrics on 127.0.0.1 (0: none)."""


@dataclass
class _Run:
    """What the loop keeps between records (the ledger itself lives in ``state``)."""

    state: PortfolioState
    bars: dict[int, dict[str, BarClosed]] = field(default_factory=lambda: defaultdict(dict))
    actions: dict[int, dict[str, ActionDecided]] = field(default_factory=lambda: defaultdict(dict))
    last_close: np.ndarray | None = None
    steps_total: int = 0


class PortfolioManager:
    """Applies the step protocol to one run's portfolio."""

    def __init__(
        self, config: KafkaConfig, rules: TradingRules, portfolio: PortfolioConfig | None = None
    ) -> None:
        self.config = config
        self.rules = rules
        self.portfolio = portfolio or PortfolioConfig()
        self.run = _Run(PortfolioState())
        self.service_metrics = ServiceMetrics(SERVICE)
        self.metrics = PortfolioMetrics(self.service_metrics.registry, rules.periods_per_year)

    async def serve(self) -> PortfolioState:
        """Run until the portfolio of this run is closed; return its final state."""
        cfg = self.config
        producer = kafka.producer(cfg.bootstrap, SERVICE)
        consumer = kafka.consumer(cfg.bootstrap, SERVICE)
        await kafka.start(producer, cfg.bootstrap)
        try:
            await kafka.start(consumer, cfg.bootstrap)
            try:
                history = await kafka.read_run(cfg.bootstrap, PORTFOLIO_EVENTS.name, cfg.run_id)
                self.run.state = fold(history)
                if self.run.state.closed:
                    log.info("run %s is already closed", cfg.run_id)
                    return self.run.state
                await kafka.assign(consumer, [SIM_CLOCK.name, MARKET_BARS.name, AGENT_ACTIONS.name])
                dead_letters = kafka.DeadLetters(producer, SERVICE, self.service_metrics)
                self.service_metrics.serve(self.portfolio.metrics_port)
                lag = asyncio.ensure_future(self.service_metrics.track_lag(consumer))
                ready = ServiceReady(
                    event_id=f"{cfg.run_id}/ready/{SERVICE}",
                    cause_id=cfg.run_id,
                    run_id=cfg.run_id,
                    event_time=0,
                    service=SERVICE,
                )
                await kafka.publish(producer, SIM_CLOCK.name, cfg.run_id, [ready])
                try:
                    while not self.run.state.closed:
                        for item in await kafka.poll(consumer, dead_letters):
                            await self._handle(item, producer, dead_letters)
                finally:
                    lag.cancel()
                return self.run.state
            finally:
                await consumer.stop()
        finally:
            await producer.stop()

    async def _handle(
        self, item: kafka.Decoded, producer: kafka.AIOKafkaProducer, dead_letters: kafka.DeadLetters
    ) -> None:
        event = item.event
        if not isinstance(event, Event) or event.run_id != self.config.run_id:
            return
        if isinstance(event, ReplayStarted):
            await self._open(event, producer)
        elif isinstance(event, BarClosed):
            self.run.bars[event.step][event.symbol] = event
            self.run.steps_total = event.steps_total
        elif isinstance(event, ActionDecided):
            problem = action_problem(event, self.run.state)
            if problem is not None:
                await dead_letters.send(item.record, problem)
                return
            self.run.actions[event.step][event.symbol] = event
        else:
            return
        await self._advance(producer)

    async def _open(self, started: ReplayStarted, producer: kafka.AIOKafkaProducer) -> None:
        if self.run.state.opened:
            return
        opened = open_portfolio(
            run_id=started.run_id,
            portfolio_id=self.config.portfolio_id,
            symbols=started.symbols,
            rules=self.rules,
            cause_id=started.event_id,
            event_time=started.event_time,
        )
        await self._emit([opened], producer)
        self.run.last_close = np.full(len(started.symbols), np.nan)

    async def _advance(self, producer: kafka.AIOKafkaProducer) -> None:
        """Do every part of the step protocol whose inputs are complete."""
        run = self.run
        if not run.state.opened or run.last_close is None:
            return
        while True:
            step = run.state.marked_step + 1
            if run.state.decided_step == run.state.marked_step:
                bars = run.bars.get(step)
                if not bars or len(bars) < next(iter(bars.values())).step_bars:
                    return
                await self._fill_and_mark(step, bars, producer)
                continue
            step = run.state.marked_step
            actions = run.actions.get(step, {})
            if len(actions) < run.state.marked_bars:
                return
            await self._decide(step, actions, producer)
            if step == run.steps_total - 1:
                return

    async def _fill_and_mark(
        self, step: int, bars: dict[str, BarClosed], producer: kafka.AIOKafkaProducer
    ) -> None:
        run = self.run
        if run.last_close is None:
            raise RuntimeError("bars before the portfolio was opened")
        symbols = run.state.symbols
        open_px = np.full(len(symbols), np.nan)
        for i, symbol in enumerate(symbols):
            bar = bars.get(symbol)
            if bar is not None:
                open_px[i] = bar.open
        event_time = next(iter(bars.values())).event_time
        events: list[Event] = fill_pending(
            run.state,
            step=step,
            event_time=event_time,
            open_px=open_px,
            last_close=run.last_close,
            rules=self.rules,
        )
        state = fold(events, run.state)
        for i, symbol in enumerate(symbols):
            bar = bars.get(symbol)
            if bar is not None:
                run.last_close[i] = bar.close
        marked = mark(
            state,
            step=step,
            event_time=event_time,
            last_close=run.last_close,
            bars=len(bars),
            cause_id=event_id(run.state.run_id, step, "bars"),
        )
        events.append(marked)
        await self._emit(events, producer)
        del run.bars[step]

    async def _decide(
        self, step: int, actions: dict[str, ActionDecided], producer: kafka.AIOKafkaProducer
    ) -> None:
        run = self.run
        event_time = next(iter(actions.values())).event_time
        events: list[Event] = list(
            record_decisions(
                run.state,
                step=step,
                event_time=event_time,
                actions=list(actions.values()),
                rules=self.rules,
            )
        )
        last = step == run.steps_total - 1
        if last:
            after = fold(events, run.state)
            events.extend(
                close_run(
                    after, step=step, event_time=event_time, cause_id=f"{run.state.run_id}/end"
                )
            )
        await self._emit(events, producer)
        del run.actions[step]
        done = StepCompleted(
            event_id=event_id(run.state.run_id, step, "completed"),
            cause_id=event_id(run.state.run_id, step, "marked"),
            run_id=run.state.run_id,
            event_time=event_time,
            step=step,
        )
        await kafka.publish(producer, SIM_CLOCK.name, run.state.run_id, [done])

    async def _emit(self, events: list[Event], producer: kafka.AIOKafkaProducer) -> None:
        """Publish events to the ledger, then fold them into the state."""
        await kafka.publish(producer, PORTFOLIO_EVENTS.name, self.config.portfolio_id, events)
        self.run.state = fold(events, self.run.state)
        self.metrics.observe(events, self.run.state)


async def main() -> PortfolioState:
    """Entry point of the service process."""
    return await PortfolioManager(KafkaConfig(), RulesConfig().rules(), PortfolioConfig()).serve()
