"""The collapse detector: a faust app over the decisions and order outcomes of the ledger.

Per agent (and run) it keeps an ``ActionWindow`` of ``core.collapse`` (the
last 1,000 actions, within 365 days of replay time), updates it for every
decision the portfolio manager recorded and every order outcome, exports every
statistic to Prometheus and emits ``CollapseDetected`` / ``CollapseResolved``
on ``monitor.alerts`` when a threshold is crossed: one open alert per agent
and metric, no storms.

The windows are fed from ``portfolio.events``, never from ``agent.actions``:
a ``DecisionRecorded`` is an action the portfolio manager validated (known
symbol, open step, one per step and symbol), so nothing it refused reaches a
window. ``streams.collapse_detector.ledger`` re-keys the ledger's decisions
and fills by symbol onto ``monitor.orders``, partitioned like the tables, in
ledger order: a step's fills (which settle the decisions of the step before)
come before its decisions.

State survives a restart: every decision goes into a faust table slot with its
sequence number (the changelog topic is the durable copy) and the windows are
rebuilt from the slots on first use; the open alerts are a table too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from prometheus_client import CollectorRegistry, start_http_server

from core.collapse import (
    FILLED,
    KINDS,
    PENDING,
    UNFILLED,
    ActionWindow,
    CollapseStats,
    evaluate,
)
from core.events import (
    CollapseDetected,
    CollapseResolved,
    DecisionRecorded,
    OrderFilled,
    OrderSkipped,
)
from streams.codec import CODEC, CodecError
from streams.collapse_detector.config import DetectorConfig
from streams.collapse_detector.ledger import (
    SERVICE,
    LedgerInput,
    LedgerRekeyer,
    dead_letter,
    ledger_problem,
    watched,
)
from streams.collapse_detector.metrics import DetectorMetrics
from streams.metrics import metrics_host
from streams.topics import MONITOR_ALERTS, MONITOR_ORDERS, PORTFOLIO_EVENTS

log = logging.getLogger(SERVICE)
TABLES = ("collapse-slots", "collapse-open")
Alert = CollapseDetected | CollapseResolved


class Detector:
    """The detector's state and rules; the faust agents below only feed it.

    ``slots`` and ``open_alerts`` are the faust tables in the worker (any
    mapping in tests): ``slots`` holds each agent's last ``window`` decisions
    as ``[raw, kind, step, event_time, outcome, sequence]`` under
    ``run|symbol|sequence % window``, ``open_alerts`` the severity of each open
    alert under ``run|symbol|metric``.
    """

    def __init__(
        self,
        config: DetectorConfig,
        metrics: DetectorMetrics,
        slots: MutableMapping[str, Any],
        open_alerts: MutableMapping[str, str],
    ) -> None:
        self.config = config
        self.limits = config.thresholds()
        self.metrics = metrics
        self.slots = slots
        self.open = open_alerts
        self.windows: dict[str, ActionWindow] = {}
        self.counts: dict[str, int] = {}
        """Decisions seen per agent (cached; the durable copy is the slots' sequence numbers)."""
        self.window_label = f"{config.window} actions / {config.span_days:g} days"

    def window(self, key: str) -> ActionWindow:
        """Return the agent's window, rebuilt from the table slots after a restart."""
        window = self.windows.get(key)
        if window is None:
            window = ActionWindow(self.config.window, self.config.span_ns)
            slots = [self.slots.get(f"{key}|{i}") for i in range(self.config.window)]
            stored = sorted((s for s in slots if s is not None), key=lambda s: s[5])
            for raw, kind, step, event_time, outcome, _ in stored:
                window.add(raw=raw, kind=kind, step=step, event_time=event_time)
                if outcome != PENDING:
                    window.settle(step, filled=outcome == FILLED)
            if stored:  # as when the newest was added: the ones before it are all settled
                window.settle_through(stored[-1][2] - 1)
            self.counts[key] = stored[-1][5] + 1 if stored else 0
            self.windows[key] = window
        return window

    def on_decision(self, decision: DecisionRecorded) -> list[Alert]:
        """Take one recorded decision into its agent's window; return the alerts it causes."""
        key = f"{decision.run_id}|{decision.symbol}"
        window = self.window(key)
        if window.last_step is not None and decision.step <= window.last_step:
            return []  # redelivered after a restart (at-least-once): already counted
        # The ledger writes a step's fills before its decisions, so every order
        # of an earlier decision is known by now: the rest did not fill.
        window.settle_through(decision.step - 1)
        kind = KINDS.index(decision.kind)
        window.add(raw=decision.raw, kind=kind, step=decision.step, event_time=decision.event_time)
        count = self.counts[key]
        self.slots[f"{key}|{count % self.config.window}"] = [
            decision.raw, kind, decision.step, decision.event_time, PENDING, count,
        ]  # fmt: skip
        self.counts[key] = count + 1
        stats = window.stats()
        self.metrics.observe(decision.symbol, stats)
        self.metrics.actions.inc()
        return self._alerts(decision, key, stats)

    def on_order(self, order: OrderFilled | OrderSkipped) -> list[Alert]:
        """Settle the decision whose order filled or was skipped (decided one step before)."""
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
        stats = window.stats()
        self.metrics.trade_frequency.labels(order.symbol).set(stats.trade_frequency)
        return self._alerts(order, key, stats)  # the trade frequency moves with orders

    def _alerts(self, cause: LedgerInput, key: str, stats: CollapseStats) -> list[Alert]:
        """Open or resolve alerts for the agent's window; ``cause`` is the event that moved it."""
        events: list[Alert] = []
        for metric, breach in evaluate(stats, self.limits).items():
            open_key = f"{key}|{metric}"
            open_severity = self.open.get(open_key, "")
            common: dict[str, Any] = {
                "cause_id": cause.event_id,
                "run_id": cause.run_id,
                "event_time": cause.event_time,
                "agent": cause.symbol,
                "metric": metric,
                "window": self.window_label,
                "actions": stats.actions,
            }
            if breach is not None and breach.severity != open_severity:
                if open_severity:
                    self.metrics.collapse_open.labels(cause.symbol, metric, open_severity).set(0)
                events.append(
                    CollapseDetected(
                        event_id=f"{cause.event_id}/collapse/{metric}/{breach.severity}",
                        severity=breach.severity,
                        value=float(breach.value),
                        threshold=float(breach.threshold),
                        **common,
                    )
                )
                self.open[open_key] = breach.severity
                self.metrics.collapse_open.labels(cause.symbol, metric, breach.severity).set(1)
                self.metrics.alerts.labels(cause.symbol, metric, breach.severity).inc()
            elif breach is None and open_severity:
                events.append(
                    CollapseResolved(
                        event_id=f"{cause.event_id}/resolved/{metric}",
                        severity=open_severity,
                        value=_value(stats, metric),
                        threshold=_threshold(self.limits, metric, open_severity),
                        **common,
                    )
                )
                self.open[open_key] = ""
                self.metrics.collapse_open.labels(cause.symbol, metric, open_severity).set(0)
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


def create_app(
    config: DetectorConfig | None = None, registry: CollectorRegistry | None = None
) -> faust.App:
    """Build the faust app with its topics, tables and agents; metrics go to ``registry``."""
    config = config or DetectorConfig()
    datadir = Path(tempfile.gettempdir()) / "tradingbot-faust" / config.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        config.app_id,
        broker=f"kafka://{config.bootstrap}",
        store="memory://",
        topic_partitions=MONITOR_ORDERS.partitions,
        topic_allow_declare=True,
        web_enabled=bool(config.web_port),
        web_port=config.web_port or 6066,
        web_bind=metrics_host(),
        web_host="127.0.0.1",
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        broker_commit_interval=0.5,
    )
    metrics = DetectorMetrics(registry or CollectorRegistry())
    # Every table is fed only by monitor.orders: co-partitioned with it.
    detector = Detector(
        config,
        metrics,
        app.Table(TABLES[0], default=None, partitions=MONITOR_ORDERS.partitions),
        app.Table(TABLES[1], default=str, partitions=MONITOR_ORDERS.partitions),
    )

    def topic(name: str, partitions: int | None = None) -> Any:
        return app.topic(name, partitions=partitions, value_serializer="raw", key_serializer="raw")

    by_symbol = topic(MONITOR_ORDERS.name, MONITOR_ORDERS.partitions)
    alerts = topic(MONITOR_ALERTS.name)
    dead_letters = topic(MONITOR_ORDERS.dlq)
    for source in (PORTFOLIO_EVENTS.name, MONITOR_ORDERS.name):
        metrics.dead_letters.labels(SERVICE, source)  # a series at 0 before any letter

    @app.service
    class LedgerReader(LedgerRekeyer):
        """The ledger's reader of this app, with its settings and metrics."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(detector.config, metrics, **kwargs)

    @app.agent(by_symbol)
    async def watch(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                record = CODEC.decode(event.value)
                problem = ledger_problem(record) if watched(record, config) else None
            except CodecError as e:
                problem = str(e)
            if problem is not None:
                letter = dead_letter(
                    MONITOR_ORDERS.name,
                    message.partition,
                    message.offset,
                    event.key,
                    event.value,
                    problem,
                )
                await dead_letters.send(key=event.key, value=CODEC.encode(letter))
                metrics.dead_letters.labels(SERVICE, MONITOR_ORDERS.name).inc()
                continue
            if not watched(record, config):
                continue
            if isinstance(record, DecisionRecorded):
                raised = detector.on_decision(record)
                metrics.event_lag.set(max(0.0, time.time() - message.timestamp))
            else:
                raised = detector.on_order(record)
            for alert in raised:
                await alerts.send(key=alert.agent.encode(), value=CODEC.encode(alert))

    return app


class Refused(RuntimeError):
    """A condition the operator must fix before the worker can start (the message says how)."""


def serve_metrics(port: int, registry: CollectorRegistry) -> None:
    """Serve /metrics on ``port`` of ``metrics_host()`` (0: not served); refuse a taken port."""
    if not port:
        return
    try:
        start_http_server(port, addr=metrics_host(), registry=registry)
    except OSError as e:
        raise Refused(_port_taken(port, "/metrics", "TRADINGBOT_DETECTOR_METRICS_PORT", e)) from e


def check_web_port(port: int) -> None:
    """Refuse to start when faust's web server port (0: none) is taken."""
    if not port:
        return
    with socket.socket() as probe:
        try:
            probe.bind((metrics_host(), port))
        except OSError as e:
            raise Refused(
                _port_taken(port, "faust's web server", "TRADINGBOT_DETECTOR_WEB_PORT", e)
            ) from e


def _port_taken(port: int, what: str, setting: str, e: OSError) -> str:
    why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
    return (
        f"port {port} for {what} {why}; stop what holds it or set {setting} to a free port"
        " (0: none)"
    )


async def ensure_changelogs(config: DetectorConfig) -> None:
    """Create the tables' changelog topics before the worker starts.

    Faust creates them itself, but a worker that starts against a topic it
    has just created can keep stale metadata of it (zero partitions) and
    crash on its first write to that table.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap, client_id=SERVICE)
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # a failed connection is the refusal's one line
    try:
        await admin.start()
    except KafkaConnectionError as e:
        with contextlib.suppress(Exception):
            await admin.close()
        raise Refused(
            f"Kafka at {config.bootstrap} does not answer; start it or set TRADINGBOT_BOOTSTRAP"
        ) from e
    finally:
        client_log.setLevel(level)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                f"{config.app_id}-{table}-changelog",
                MONITOR_ORDERS.partitions,
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
    """Run the worker: ``python -m streams.collapse_detector`` (faust's worker options).

    A port in use or a broker that does not answer is one line on stderr and
    exit code 2, before the worker starts.
    """
    config = DetectorConfig()
    registry = CollectorRegistry()
    try:
        check_web_port(config.web_port)
        serve_metrics(config.metrics_port, registry)
        asyncio.run(ensure_changelogs(config))
    except Refused as e:
        print(f"{SERVICE}: {e}", file=sys.stderr)
        sys.exit(2)
    if len(sys.argv) == 1:
        level = os.environ.get("TRADINGBOT_LOG_LEVEL", "warn").lower()
        # Metrics are served by prometheus_client; faust's web server only on request.
        web = ["--web-port", str(config.web_port)] if config.web_port else ["--without-web"]
        sys.argv += ["worker", *web, "--loglevel", {"warning": "warn"}.get(level, level)]
    create_app(config, registry).main()
