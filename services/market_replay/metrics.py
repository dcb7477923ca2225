"""Market-replay metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ReplayMetrics:
    """Progress and speed of the replay."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.steps = Counter(
            "tradingbot_replay_steps", "Steps emitted and completed", registry=registry
        )
        self.bars = Counter("tradingbot_replay_bars", "Bars emitted", registry=registry)
        self.progress = Gauge(
            "tradingbot_replay_progress_ratio",
            "Completed steps / steps of the run",
            registry=registry,
        )
        self.step_seconds = Histogram(
            "tradingbot_replay_step_seconds",
            "Wall time of one lockstep round trip",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=registry,
        )
        self.behind = Gauge(
            "tradingbot_replay_behind_schedule_seconds",
            "Paced mode: how late the last step was published against its schedule",
            registry=registry,
        )
