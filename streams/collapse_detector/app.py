"""The collapse detector: a faust app over ``agent.actions`` and the orders of the ledger.

Per agent (and run) it keeps an ``ActionWindow`` of ``core.collapse`` (the
last 1,000 actions, within 365 days of replay time), updates it for every
action and fill, exports every statistic to Prometheus and emits
``CollapseDetected`` / ``CollapseResolved`` on ``monitor.alerts`` when a
threshold is crossed: one open alert per agent and metric, no storms.

State survives a restart: every action goes into a faust table slot with its
sequence number (the changelog topic is the durable copy) and the windows are
rebuilt from the slots on first use; the open alerts are a table too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import CollectorRegistry, start_http_server

from core.actions import ActionKind, classify
from core.collapse import FILLED, PENDING, UNFILLED, ActionWindow, CollapseStats, evaluate
from core.events import (
    AccountMarked,
    ActionDecided,
    CollapseDetected,
    CollapseResolved,
    OrderFilled,
    OrderSkipped,
)
from streams.codec import CODEC, CodecError, DeadLettered
from streams.collapse_detector.config import DetectorConfig
from streams.collapse_detector.metrics import DetectorMetrics
from streams.metrics import metrics_host
from streams.topics import AGENT_ACTIONS, MONITOR_ALERTS, MONITOR_ORDERS, PORTFOLIO_EVENTS

SERVICE = "collapse-detector"
log = logging.getLogger(SERVICE)
KIND_LABEL = {ActionKind.HOLD: "hold", ActionKind.BUY: "buy", ActionKind.SELL: "sell"}


class Detector:
    """The detector's state and rules; the faust agents below only feed it."""

    def __init__(self, config: DetectorConfig, metrics: DetectorMetrics, app: faust.App) -> None:
        self.config = config
        self.limits = config.thresholds()
        self.metrics = metrics
        self.windows: dict[str, ActionWindow] = {}
        self.slots = app.Table(TABLES[0], default=None, partitions=AGENT_ACTIONS.partitions)
        self.horizon: dict[str, int] = {}
        """Per run, the last step whose orders are all known (the ledger marked the next)."""
        self.counts: dict[str, int] = {}
        """Actions seen per agent (cached; the durable copy is the slots' sequence numbers)."""
        self.open = app.Table(TABLES[1], default=str, partitions=AGENT_ACTIONS.partitions)
        self.window_label = f"{config.window} actions / {config.span_days:g} days"

    def window(self, key: str) -> ActionWindow:
        """The agent's window, rebuilt from the table slots after a restart."""
        window = self.windows.get(key)
        if window is None:
            window = ActionWindow(self.config.window, self.config.span_ns)
            slots = [self.slots.get(f"{key}|{i}") for i in range(self.config.window)]
            stored = sorted((s for s in slots if s is not None), key=lambda s: s[5])
            for raw, kind, step, event_time, outcome, _ in stored:
                window.add(raw=raw, kind=kind, step=step, event_time=event_time)
                if outcome != PENDING:
                    window.settle(step, filled=outcome == FILLED)
            self.counts[key] = stored[-1][5] + 1 if stored else 0
            self.windows[key] = window
        return window

    def on_action(self, action: ActionDecided) -> list[CollapseDetected | CollapseResolved]:
        """Take one action into its agent's window; return the alert events it causes."""
        key = f"{action.run_id}|{action.symbol}"
        kind = int(classify([action.smoothed], self.config.hold_threshold)[0])
        window = self.window(key)
        if window.last_step is not None and action.step <= window.last_step:
            return []  # redelivered after a restart (at-least-once): already counted
        window.add(raw=action.raw, kind=kind, step=action.step, event_time=action.event_time)
        count = self.counts[key]
        self.slots[f"{key}|{count % self.config.window}"] = [
            action.raw, kind, action.step, action.event_time, PENDING, count,
        ]  # fmt: skip
        self.counts[key] = count + 1
        window.settle_through(self.horizon.get(action.run_id, -1))
        stats = window.stats()
        self.metrics.observe(action.symbol, stats)
        self.metrics.actions.inc()
        return self._alerts(action, key, stats)

    def on_order(
        self, order: OrderFilled | OrderSkipped
    ) -> list[CollapseDetected | CollapseResolved]:
        """Settle the action whose order filled or was skipped (decided one step before)."""
        key = f"{order.run_id}|{order.symbol}"
        window = self.window(key)
        step = order.step - 1
        filled = isinstance(order, OrderFilled)
        if window.settle(step, filled=filled):
            count = self.counts[key]
            for i in range(count - 1, max(0, count - self.config.window) - 1, -1):
                slot_key = f"{key}|{i % self.config.window}"
                slot = self.slots.get(slot_key)
                if slot is not None and slot[2] == step:
                    self.slots[slot_key] = [*slot[:4], FILLED if filled else UNFILLED, slot[5]]
                    break
        window.settle_through(self.horizon.get(order.run_id, -1))
        stats = window.stats()
        self.metrics.trade_frequency.labels(order.symbol).set(stats.trade_frequency)
        return self._alerts(order, key, stats)  # the trade frequency moves with orders

    def on_marked(self, marked: AccountMarked) -> None:
        """The ledger marked ``step``: the orders of step - 1 are all known."""
        self.horizon[marked.run_id] = max(self.horizon.get(marked.run_id, -1), marked.step - 1)

    def _alerts(
        self, action: ActionDecided | OrderFilled | OrderSkipped, key: str, stats: CollapseStats
    ) -> list[CollapseDetected | CollapseResolved]:
        """Open or resolve alerts for the agent's window; ``action`` is the cause."""
        events: list[CollapseDetected | CollapseResolved] = []
        for metric, breach in evaluate(stats, self.limits).items():
            open_key = f"{key}|{metric}"
            open_severity = self.open[open_key]
            common: dict[str, Any] = {
                "cause_id": action.event_id,
                "run_id": action.run_id,
                "event_time": action.event_time,
                "agent": action.symbol,
                "metric": metric,
                "window": self.window_label,
                "actions": stats.actions,
            }
            if breach is not None and breach.severity != open_severity:
                if open_severity:
                    self.metrics.collapse_open.labels(action.symbol, metric, open_severity).set(0)
                events.append(
                    CollapseDetected(
                        event_id=f"{action.event_id}/collapse/{metric}/{breach.severity}",
                        severity=breach.severity,
                        value=float(breach.value),
                        threshold=float(breach.threshold),
                        **common,
                    )
                )
                self.open[open_key] = breach.severity
                self.metrics.collapse_open.labels(action.symbol, metric, breach.severity).set(1)
                self.metrics.alerts.labels(action.symbol, metric, breach.severity).inc()
            elif breach is None and open_severity:
                events.append(
                    CollapseResolved(
                        event_id=f"{action.event_id}/resolved/{metric}",
                        severity=open_severity,
                        value=_value(stats, metric),
                        threshold=_threshold(self.limits, metric, open_severity),
                        **common,
                    )
                )
                self.open[open_key] = ""
                self.metrics.collapse_open.labels(action.symbol, metric, open_severity).set(0)
        return events


def _value(stats: CollapseStats, metric: str) -> float:
    return float(
        {
            "dominance": stats.dominant_bin,
            "entropy": stats.diversity,
            "repeats": stats.repeat_run,
            "trade_frequency": stats.trade_frequency,
        }[metric]
    )


def _threshold(limits: Any, metric: str, severity: str) -> float:
    if metric == "entropy":
        return float(limits.diversity_critical if severity == "critical" else limits.diversity)
    return float(
        {
            "dominance": limits.dominance,
            "repeats": limits.repeats,
            "trade_frequency": limits.trade_frequency,
        }[metric]
    )


def create_app(config: DetectorConfig | None = None) -> faust.App:
    """The faust app with its topics, tables and agents."""
    config = config or DetectorConfig()
    datadir = Path(tempfile.gettempdir()) / "tradingbot-faust" / config.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        config.app_id,
        broker=f"kafka://{config.bootstrap}",
        store="memory://",
        topic_partitions=AGENT_ACTIONS.partitions,
        topic_allow_declare=True,
        web_enabled=False,
        web_host="127.0.0.1",
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        broker_commit_interval=0.5,
    )
    registry = CollectorRegistry()
    metrics = DetectorMetrics(registry)
    detector = Detector(config, metrics, app)

    def topic(name: str, partitions: int | None = None) -> Any:
        return app.topic(name, partitions=partitions, value_serializer="raw", key_serializer="raw")

    actions = topic(AGENT_ACTIONS.name)
    ledger = topic(PORTFOLIO_EVENTS.name)
    orders = topic(MONITOR_ORDERS.name, MONITOR_ORDERS.partitions)
    alerts = topic(MONITOR_ALERTS.name)
    dead_topics = {t: topic(f"{t}.dlq") for t in (AGENT_ACTIONS.name, PORTFOLIO_EVENTS.name)}
    for source in dead_topics:
        metrics.dead_letters.labels(SERVICE, source)  # a series at 0 before any letter

    async def dead_letter(event: Any, topic: str, reason: str) -> None:
        letter = DeadLettered(
            event_id=f"dlq/{topic}/{event.message.partition}/{event.message.offset}/{SERVICE}",
            source_topic=topic,
            partition=event.message.partition,
            offset=event.message.offset,
            key=event.key.decode("utf-8", "replace") if event.key else None,
            reason=reason,
            service=SERVICE,
            payload=event.value or b"",
        )
        await dead_topics[topic].send(key=event.key, value=CODEC.encode(letter))
        metrics.dead_letters.labels(SERVICE, topic).inc()

    @app.agent(actions)
    async def watch_actions(stream: Any) -> None:
        async for event in stream.events():
            try:
                action = CODEC.decode_as(event.value, ActionDecided)
            except CodecError as e:
                await dead_letter(event, AGENT_ACTIONS.name, str(e))
                continue
            if config.run_id and action.run_id != config.run_id:
                continue
            for alert in detector.on_action(action):
                await alerts.send(key=alert.agent.encode(), value=CODEC.encode(alert))
            metrics.event_lag.set(max(0.0, time.time() - event.message.timestamp))

    @app.agent(ledger)
    async def rekey_orders(stream: Any) -> None:
        async for event in stream.events():
            try:
                order = CODEC.decode(event.value)
            except CodecError as e:
                await dead_letter(event, PORTFOLIO_EVENTS.name, str(e))
                continue
            if not isinstance(order, OrderFilled | OrderSkipped | AccountMarked):
                continue
            if config.run_id and order.run_id != config.run_id:
                continue
            if isinstance(order, AccountMarked):  # every partition learns the horizon
                for partition in range(MONITOR_ORDERS.partitions):
                    await orders.send(key=None, value=event.value, partition=partition)
            else:
                await orders.send(key=order.symbol.encode(), value=event.value)

    @app.agent(orders)
    async def watch_orders(stream: Any) -> None:
        async for value in stream:
            order = CODEC.decode(value)
            if isinstance(order, OrderFilled | OrderSkipped):
                for alert in detector.on_order(order):
                    await alerts.send(key=alert.agent.encode(), value=CODEC.encode(alert))
            elif isinstance(order, AccountMarked):
                detector.on_marked(order)

    @app.task
    async def serve_metrics() -> None:
        if config.metrics_port:
            start_http_server(config.metrics_port, addr=metrics_host(), registry=registry)

    return app


TABLES = ("collapse-slots", "collapse-open")


async def ensure_changelogs(config: DetectorConfig) -> None:
    """Create the tables' changelog topics before the worker starts.

    Faust creates them itself, but a worker that starts against a topic it
    has just created can keep stale metadata of it (zero partitions) and
    crash on its first write to that table.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap, client_id=SERVICE)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                f"{config.app_id}-{table}-changelog",
                AGENT_ACTIONS.partitions,
                1,
                topic_configs={"cleanup.policy": "compact"},
            )
            for table in TABLES
            if f"{config.app_id}-{table}-changelog" not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


def main() -> None:
    """Run the worker: ``python -m streams.collapse_detector`` (faust's worker options)."""
    asyncio.run(ensure_changelogs(DetectorConfig()))
    if len(sys.argv) == 1:
        level = os.environ.get("TRADINGBOT_LOG_LEVEL", "warn").lower()
        # No faust web server: metrics are served by prometheus_client on 127.0.0.1.
        sys.argv += ["worker", "--without-web", "--loglevel", {"warning": "warn"}.get(level, level)]
    create_app().main()
