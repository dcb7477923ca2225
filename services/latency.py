"""Latency of a run, bar emitted -> action published -> decision recorded.

Every record carries the time its producer sent it (Kafka's ``CreateTime``,
milliseconds; all services of a run share the host's clock). The services
observe the latencies live as Prometheus histograms (``LatencyMetrics``);
``run_latency`` measures them again afterwards from the three logs, which is
what the demo summarises and the benchmarks report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from core.events import ActionDecided, ActionLate, BarClosed, DecisionMissed, DecisionRecorded
from services import kafka
from streams.topics import AGENT_ACTIONS, MARKET_BARS, PORTFOLIO_EVENTS

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
"""Seconds: fine below 100 ms, where a paced run's budget is."""


class LatencyMetrics:
    """``tradingbot_latency_seconds{path}`` and the paced run's missed and late actions."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "tradingbot_latency_seconds",
            "Wall time between two records of one bar's path (bar_to_action: bar sent to "
            "action sent; action_to_decision and bar_to_decision: to its decision committed)",
            ("path",),
            buckets=BUCKETS,
            registry=registry,
        )
        self.missed = Counter(
            "tradingbot_decisions_missed",
            "Symbols without an action by their step's deadline (paced runs)",
            registry=registry,
        )
        self.late = Counter(
            "tradingbot_actions_late",
            "Actions that came after their step was decided without them (paced runs)",
            registry=registry,
        )

    def observe(self, path: str, sent_ms: int, at_ms: int) -> None:
        """Observe one latency from ``sent_ms`` to ``at_ms`` (epoch milliseconds)."""
        self.seconds.labels(path).observe(max(0, at_ms - sent_ms) / 1000.0)


@dataclass(frozen=True)
class Latency:
    """Percentiles of one path, in milliseconds."""

    path: str
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def line(self) -> str:
        """One summary line."""
        if not self.count:
            return f"{self.path:<20} no samples"
        return (
            f"{self.path:<20} p50 {self.p50_ms:7.1f} ms   p99 {self.p99_ms:7.1f} ms   "
            f"max {self.max_ms:7.1f} ms   ({self.count} samples)"
        )


@dataclass(frozen=True)
class RunLatency:
    """A run's latencies and its paced-mode outcome, measured from the logs."""

    paths: tuple[Latency, ...]
    decisions: int
    missed: int
    late: int

    def lines(self) -> list[str]:
        """The summary's lines."""
        out = [p.line() for p in self.paths]
        out.append(
            f"{'deadlines':<20} {self.decisions} decisions recorded, {self.missed} missed, "
            f"{self.late} late actions"
        )
        return out


def _latency(path: str, samples: list[int]) -> Latency:
    if not samples:
        return Latency(path, 0, 0.0, 0.0, 0.0)
    a = np.asarray(samples, dtype=np.float64)
    return Latency(
        path,
        len(samples),
        float(np.percentile(a, 50)),
        float(np.percentile(a, 99)),
        float(a.max()),
    )


async def _stamps(bootstrap: str, topic: str, run_id: str) -> list[tuple[int, object]]:
    return [
        (item.record.timestamp, item.event)
        async for item in kafka.records(bootstrap, topic)
        if getattr(item.event, "run_id", None) == run_id
    ]


async def run_latency(bootstrap: str, run_id: str) -> RunLatency:
    """Read the run's bars, actions and ledger with their send times; measure each path."""
    bars, actions, ledger = await asyncio.gather(
        _stamps(bootstrap, MARKET_BARS.name, run_id),
        _stamps(bootstrap, AGENT_ACTIONS.name, run_id),
        _stamps(bootstrap, PORTFOLIO_EVENTS.name, run_id),
    )
    bar_at = {e.event_id: ts for ts, e in bars if isinstance(e, BarClosed)}
    action_at = {e.event_id: ts for ts, e in actions if isinstance(e, ActionDecided)}
    answers = {e.event_id: e.cause_id for _, e in actions if isinstance(e, ActionDecided)}
    bar_to_action = [
        ts - bar_at[e.cause_id]
        for ts, e in actions
        if isinstance(e, ActionDecided) and e.cause_id in bar_at
    ]
    action_to_decision: list[int] = []
    bar_to_decision: list[int] = []
    decisions = missed = late = 0
    for ts, e in ledger:
        if isinstance(e, DecisionRecorded):
            decisions += 1
            sent = action_at.get(e.cause_id)
            if sent is not None:
                action_to_decision.append(ts - sent)
            bar = bar_at.get(answers.get(e.cause_id, ""))
            if bar is not None:
                bar_to_decision.append(ts - bar)
        elif isinstance(e, DecisionMissed):
            missed += 1
        elif isinstance(e, ActionLate):
            late += 1
    return RunLatency(
        paths=(
            _latency("bar -> action", bar_to_action),
            _latency("action -> decision", action_to_decision),
            _latency("bar -> decision", bar_to_decision),
        ),
        decisions=decisions,
        missed=missed,
        late=late,
    )
