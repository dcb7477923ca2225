"""The detector's Prometheus metrics (names in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from core.collapse import CollapseStats


class DetectorMetrics:
    """Gauges of every statistic per agent, alert counters, throughput."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("agent",)) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        self.entropy = gauge("tradingbot_agent_action_entropy_nats", "Entropy of the action bins")
        self.diversity = gauge(
            "tradingbot_agent_action_diversity_ratio", "Entropy / ln(bins): 0 collapsed, 1 uniform"
        )
        self.dominant_bin = gauge(
            "tradingbot_agent_dominant_bin_ratio", "Share of the most frequent action bin"
        )
        self.dominant_kind = gauge(
            "tradingbot_agent_dominant_kind_ratio", "Share of the most frequent kind"
        )
        self.kind_share = gauge(
            "tradingbot_agent_kind_share_ratio", "Share of each kind", ("agent", "kind")
        )
        self.repeat_run = gauge(
            "tradingbot_agent_repeat_run_actions", "Longest run of identical actions"
        )
        self.kind_run = gauge("tradingbot_agent_kind_run_actions", "Longest run of identical kinds")
        self.trade_frequency = gauge(
            "tradingbot_agent_trade_frequency_ratio", "Share of actions that led to a fill"
        )
        self.saturation = gauge(
            "tradingbot_agent_saturation_ratio", "Share of actions at the bounds"
        )
        self.window_actions = gauge("tradingbot_agent_window_actions", "Actions in the window")
        self.collapse_open = gauge(
            "tradingbot_agent_collapse_open",
            "1 while a collapse alert is open",
            ("agent", "metric", "severity"),
        )
        self.alerts = Counter(
            "tradingbot_agent_collapse_alerts",
            "CollapseDetected events emitted",
            ("agent", "metric", "severity"),
            registry=registry,
        )
        self.actions = Counter(
            "tradingbot_detector_actions",
            "Actions processed (decisions the portfolio manager recorded)",
            registry=registry,
        )
        self.event_lag = Gauge(
            "tradingbot_detector_event_lag_seconds",
            "Wall time since the newest processed decision was written to the ledger",
            registry=registry,
        )
        self.dead_letters = Counter(
            "tradingbot_dlq_records",
            "Records sent to a dead-letter topic",
            ("service", "topic"),
            registry=registry,
        )

    def observe(self, agent: str, s: CollapseStats) -> None:
        """Export one agent's statistics."""
        self.entropy.labels(agent).set(s.entropy)
        self.diversity.labels(agent).set(s.diversity)
        self.dominant_bin.labels(agent).set(s.dominant_bin)
        self.dominant_kind.labels(agent).set(s.dominant_kind)
        for kind, share in zip(("buy", "sell", "hold"), s.kind_shares, strict=True):
            self.kind_share.labels(agent, kind).set(share)
        self.repeat_run.labels(agent).set(s.repeat_run)
        self.kind_run.labels(agent).set(s.kind_run)
        self.trade_frequency.labels(agent).set(s.trade_frequency)
        self.saturation.labels(agent).set(s.saturation)
        self.window_actions.labels(agent).set(s.actions)
