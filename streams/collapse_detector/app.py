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

The reader forwards the ledger in batches, and the worker takes a batch at a
time: every record moves its window and is judged on its own (the alerts
and their delays are those of one record at a time), then the batch's alerts
are sent and waited for, then each agent the batch moved gets one write to
the state table (the changelog topic is the durable copy): a segment with the
records its window took and a head with its open alerts. A restarted worker
rebuilds each window from its segments on first use; records it takes again
(at-least-once) are recognised and not counted twice.
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
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faust
import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from prometheus_client import CollectorRegistry, start_http_server

from core.collapse import KINDS, ActionWindow, CollapseStats, evaluate
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
    partition_of,
    records_of,
    watched,
)
from streams.collapse_detector.metrics import DetectorMetrics
from streams.metrics import metrics_host
from streams.topics import MONITOR_ALERTS, MONITOR_ORDERS, PORTFOLIO_EVENTS

log = logging.getLogger(SERVICE)
TABLES = ("collapse-state",)
Alert = CollapseDetected | CollapseResolved


DECISION, ORDER = 0, 1
"""Kinds of the records of a segment: ``[DECISION, step, event_time, raw, kind]`` and
``[ORDER, step decided, filled]``."""


class _Head(msgspec.Struct, array_like=True):
    newest: int
    """Number of the agent's newest segment (-1: none yet)."""
    open: dict[str, str]
    """Severity of each open alert by metric."""


_encoder = msgspec.json.Encoder()
_head = msgspec.json.Decoder(_Head)
_segment = msgspec.json.Decoder(list[Any])


@dataclass(slots=True)
class _Agent:
    """One agent's window and what is not in the table yet."""

    symbol: str
    window: ActionWindow
    open: dict[str, str]
    next_segment: int
    pending: list[list[Any]] = field(default_factory=list)
    """Records the window took since the last ``persist``: the next segment."""
    head_changed: bool = False


class Detector:
    """The detector's state and rules; the faust agent below only feeds it.

    ``state`` is the faust table in the worker (any mapping in tests). For
    each agent (``run|symbol``) it holds a head, ``[newest segment, open
    alerts]``, and under ``run|symbol|n % ring`` its segments: segment ``n``
    holds, in order, the records its window took in one batch
    (``[DECISION, step, event_time, raw, kind]``, ``[ORDER, step decided,
    filled]``). A window is rebuilt by replaying its newest segments that
    hold ``window`` decisions; the ring (``2 * window + 2`` segments) is
    long enough for that even with one record per segment. So the changelog
    takes one segment and one head per agent and batch, not a write per
    action.
    """

    def __init__(
        self, config: DetectorConfig, metrics: DetectorMetrics, state: MutableMapping[str, Any]
    ) -> None:
        self.config = config
        self.limits = config.thresholds()
        self.metrics = metrics
        self.state = state
        self.ring = 2 * config.window + 2
        self.agents: dict[str, _Agent] = {}
        self.touched: dict[str, str] = {}
        """Agents whose window moved since the last ``persist``, with their symbol."""
        self.decisions = 0
        self.window_label = f"{config.window} actions / {config.span_days:g} days"

    def window(self, key: str) -> ActionWindow:
        """Return the window of agent ``run|symbol``, rebuilt from the table after a restart."""
        return self._agent(key, key.rpartition("|")[2]).window

    def _agent(self, key: str, symbol: str) -> _Agent:
        agent = self.agents.get(key)
        if agent is None:
            agent = self.agents[key] = self._rebuild(key, symbol)
        return agent

    def _rebuild(self, key: str, symbol: str) -> _Agent:
        window = ActionWindow(self.config.window, self.config.span_ns)
        stored = self.state.get(key)
        if stored is None:
            return _Agent(symbol, window, {}, 0)
        head = _head.decode(stored)
        segments: list[list[Any]] = []
        decisions = 0
        for n in range(head.newest, max(-1, head.newest - self.ring), -1):
            value = self.state.get(f"{key}|{n % self.ring}")
            if value is None:
                break
            number, records = _segment.decode(value)
            if number != n:  # not written (the head is written after its segment)
                break
            segments.append(records)
            decisions += sum(record[0] == DECISION for record in records)
            if decisions >= self.config.window:
                break
        for records in reversed(segments):
            for record in records:
                _take(window, record)
        for metric, severity in head.open.items():
            if severity:
                self.metrics.collapse_open.labels(symbol, metric, severity).set(1)
        return _Agent(symbol, window, dict(head.open), head.newest + 1)

    def forget(self, partitions: set[int]) -> None:
        """Drop the windows of agents in revoked ``partitions`` of ``monitor.orders``.

        The table is the truth: a partition may be another worker's before it
        comes back, and what this one did not persist of it is not committed
        either, so its next owner takes it again.
        """
        for key, agent in list(self.agents.items()):
            if partition_of(agent.symbol, MONITOR_ORDERS.partitions) in partitions:
                del self.agents[key]
                self.touched.pop(key, None)

    def on_records(self, records: Iterable[LedgerInput]) -> list[Alert]:
        """Take ledger records, in order, into their windows; return the alerts they cause.

        The windows move at once; what they took reaches the table at ``persist``.
        """
        alerts: list[Alert] = []
        for record in records:
            if isinstance(record, DecisionRecorded):
                alerts += self.on_decision(record)
            else:
                alerts += self.on_order(record)
        return alerts

    def on_decision(self, decision: DecisionRecorded) -> list[Alert]:
        """Take one recorded decision into its agent's window; return the alerts it causes."""
        key = f"{decision.run_id}|{decision.symbol}"
        agent = self._agent(key, decision.symbol)
        window = agent.window
        last = window.last_step
        if last is not None and decision.step <= last:
            return []  # redelivered after a restart (at-least-once): already counted
        record = [
            DECISION, decision.step, decision.event_time, decision.raw, KINDS.index(decision.kind),
        ]  # fmt: skip
        _take(window, record)
        agent.pending.append(record)
        self.touched[key] = decision.symbol
        self.decisions += 1
        return self._alerts(decision, agent, window.stats())

    def on_order(self, order: OrderFilled | OrderSkipped) -> list[Alert]:
        """Settle the decision whose order filled or was skipped (decided one step before)."""
        key = f"{order.run_id}|{order.symbol}"
        agent = self._agent(key, order.symbol)
        record = [ORDER, order.step - 1, int(isinstance(order, OrderFilled))]
        if _take(agent.window, record):
            agent.pending.append(record)
        self.touched[key] = order.symbol
        return self._alerts(order, agent, agent.window.stats())  # the trade frequency moves

    def persist(self) -> None:
        """Write what the windows took since the last call to the table; export the statistics.

        Call it once the alerts those records caused are on the broker: a
        worker killed before the table has them takes the records again.
        """
        for key, symbol in self.touched.items():
            agent = self.agents[key]
            if agent.pending:
                number = agent.next_segment
                self.state[f"{key}|{number % self.ring}"] = _encoder.encode((number, agent.pending))
                agent.next_segment, agent.pending = number + 1, []
                agent.head_changed = True
            if agent.head_changed:
                self.state[key] = _encoder.encode(_Head(agent.next_segment - 1, agent.open))
                agent.head_changed = False
            self.metrics.observe(symbol, agent.window.stats())
        self.touched.clear()
        self.metrics.actions.inc(self.decisions)
        self.decisions = 0

    def _alerts(self, cause: LedgerInput, agent: _Agent, stats: CollapseStats) -> list[Alert]:
        """Open or resolve alerts for the agent's window; ``cause`` is the event that moved it."""
        events: list[Alert] = []
        for metric, breach in evaluate(stats, self.limits).items():
            open_severity = agent.open.get(metric, "")
            if breach is None and not open_severity:
                continue
            if breach is not None and breach.severity == open_severity:
                continue
            common: dict[str, Any] = {
                "cause_id": cause.event_id,
                "run_id": cause.run_id,
                "event_time": cause.event_time,
                "agent": cause.symbol,
                "metric": metric,
                "window": self.window_label,
                "actions": stats.actions,
            }
            if open_severity:
                self.metrics.collapse_open.labels(cause.symbol, metric, open_severity).set(0)
            if breach is not None:
                events.append(
                    CollapseDetected(
                        event_id=f"{cause.event_id}/collapse/{metric}/{breach.severity}",
                        severity=breach.severity,
                        value=float(breach.value),
                        threshold=float(breach.threshold),
                        **common,
                    )
                )
                agent.open[metric] = breach.severity
                self.metrics.collapse_open.labels(cause.symbol, metric, breach.severity).set(1)
                self.metrics.alerts.labels(cause.symbol, metric, breach.severity).inc()
            else:
                events.append(
                    CollapseResolved(
                        event_id=f"{cause.event_id}/resolved/{metric}",
                        severity=open_severity,
                        value=_value(stats, metric),
                        threshold=_threshold(self.limits, metric, open_severity),
                        **common,
                    )
                )
                agent.open[metric] = ""
            agent.head_changed = True
        return events


def _take(window: ActionWindow, record: list[Any]) -> bool:
    """Apply one segment record to ``window`` (live and on a rebuild alike).

    A decision first settles the agent's earlier decisions without a fill:
    the ledger writes a step's fills before its decisions, so their orders
    are known by then. Returns False for an order whose decision is not in
    the window.
    """
    if record[0] == DECISION:
        _, step, event_time, raw, kind = record
        window.settle_through(step - 1)
        window.add(raw=raw, kind=kind, step=step, event_time=event_time)
        return True
    _, step, filled = record
    return window.settle(step, filled=bool(filled))


def unpack(
    value: bytes | None, config: DetectorConfig
) -> tuple[list[LedgerInput], list[tuple[int | None, bytes | None, str]]]:
    """The watched ledger records of a ``monitor.orders`` record, and what cannot be used.

    A record is a batch of ledger records or a single one. Each problem is
    ``(index in the batch or None, payload, reason)``, for the dead-letter topic.
    """
    try:
        batch = records_of(value)
    except CodecError as e:
        return [], [(None, value, str(e))]
    payloads: list[bytes | None] = [value] if batch is None else list(batch)
    records: list[LedgerInput] = []
    problems: list[tuple[int | None, bytes | None, str]] = []
    for index, payload in enumerate(payloads):
        try:
            record = CODEC.decode(payload)
        except CodecError as e:
            problems.append((None if batch is None else index, payload, str(e)))
            continue
        if not watched(record, config):
            continue
        problem = ledger_problem(record)
        if problem is not None:
            problems.append((None if batch is None else index, payload, problem))
            continue
        records.append(record)
    return records, problems


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
        Worker=QuietWorker,
        broker_commit_every=100,
        broker_commit_interval=0.5,
    )
    metrics = DetectorMetrics(registry or CollectorRegistry())
    # The table is fed only by monitor.orders: co-partitioned with it.
    detector = Detector(
        config,
        metrics,
        app.Table(TABLES[0], value_type=bytes, partitions=MONITOR_ORDERS.partitions),
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

    async def forget_windows(sender: Any, revoked: Any, **kwargs: Any) -> None:
        detector.forget({tp.partition for tp in revoked if tp.topic == MONITOR_ORDERS.name})

    app.on_partitions_revoked.connect(cast(Any, forget_windows))

    @app.agent(by_symbol)
    async def watch(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            records, problems = unpack(event.value, config)
            for index, payload, problem in problems:
                letter = dead_letter(
                    MONITOR_ORDERS.name, message.partition, message.offset, event.key,
                    payload, problem, index,
                )  # fmt: skip
                await dead_letters.send(key=event.key, value=CODEC.encode(letter))
                metrics.dead_letters.labels(SERVICE, MONITOR_ORDERS.name).inc()
            raised = detector.on_records(records)
            # The alerts reach the broker before the state that records them, so a
            # worker killed in between raises them again (same ids) rather than never.
            sent = [
                await alerts.send(key=a.agent.encode(), value=CODEC.encode(a), force=True)
                for a in raised
            ]
            if sent:
                await asyncio.gather(*sent)
            detector.persist()
            if records:
                metrics.event_lag.set(max(0.0, time.time() - message.timestamp))

    return app


class QuietWorker(faust.Worker):
    """faust's worker without its terminal spinner.

    The spinner turns every log record into a spin, so faust sets the root
    logger to DEBUG for it: every send of the Kafka client then builds a log
    record nobody reads (a tenth of the worker's time, profiled).
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Configure the root logger without the spinner's handler."""
        self.spinner = None
        super().on_setup_root_logger(logger, level)


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
