"""Symbol-agent metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class AgentMetrics:
    """Inference latency, batch sizes and actions by kind."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "tradingbot_inference_latency_seconds",
            "One batched policy call",
            buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=registry,
        )
        self.batch_size = Histogram(
            "tradingbot_inference_batch_size",
            "Observations per policy call",
            buckets=(1, 8, 16, 32, 64, 143, 256, 512, 1024),
            registry=registry,
        )
        self.actions = Counter(
            "tradingbot_agent_actions", "Actions emitted by kind", ("kind",), registry=registry
        )
        for kind in ("buy", "sell", "hold"):
            self.actions.labels(kind)
