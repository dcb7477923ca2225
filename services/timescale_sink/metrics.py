"""TimescaleDB-sink metrics (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.db.rows import DERIVED, TABLES


class SinkMetrics:
    """Rows written and redelivered by table, batch latency, database retries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "tradingbot_sink_rows", "New rows written, by table", ("table",), registry=registry
        )
        self.redelivered = Counter(
            "tradingbot_sink_redelivered_rows",
            "Rows offered again that the database already had (written as nothing)",
            ("table",),
            registry=registry,
        )
        for name in [t.name for t in TABLES] + list(DERIVED):
            self.rows.labels(name)
        for table in TABLES:
            self.redelivered.labels(table.name)
        self.batches = Counter(
            "tradingbot_sink_batches", "Batches committed to the database", registry=registry
        )
        self.batch_seconds = Histogram(
            "tradingbot_sink_batch_duration_seconds",
            "Seconds to write and commit one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.retries = Counter(
            "tradingbot_sink_database_retries",
            "Writes retried after a transient database error",
            registry=registry,
        )
        self.up = Gauge(
            "tradingbot_sink_database_up",
            "1 while the last database write succeeded, 0 while it is retried",
            registry=registry,
        )
        self.refresh_seconds = Histogram(
            "tradingbot_sink_refresh_duration_seconds",
            "Seconds to refresh the daily rollups",
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
            registry=registry,
        )
