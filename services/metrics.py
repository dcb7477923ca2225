"""Metrics every service exports: consumer lag, dead letters, process memory (docs/metrics.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import psutil
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.errors import PortInUse
from streams.metrics import metrics_host


class _MemoryCollector(Collector):
    """Resident memory of this process, absolute and as a share of the machine's memory."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.process = psutil.Process()
        self.total = psutil.virtual_memory().total

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rss = float(self.process.memory_info().rss)
        ratio = GaugeMetricFamily(
            "tradingbot_process_memory_ratio",
            "Resident memory / machine memory",
            labels=["service"],
        )
        ratio.add_metric([self.service], rss / self.total)
        resident = GaugeMetricFamily(
            "tradingbot_process_resident_memory_bytes", "Resident memory", labels=["service"]
        )
        resident.add_metric([self.service], rss)
        yield ratio
        yield resident


class ServiceMetrics:
    """The metrics every service has, in the service's own registry."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry()
        self.lag = Gauge(
            "tradingbot_kafka_consumer_lag_messages",
            "End offset minus position, summed over partitions",
            ("service", "topic"),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "tradingbot_dlq_records",
            "Records sent to a dead-letter topic",
            ("service", "topic"),
            registry=self.registry,
        )
        self.redelivered = Counter(
            "tradingbot_kafka_redelivered_records",
            "Identical copies of records already taken, ignored",
            ("service", "topic"),
            registry=self.registry,
        )
        self.registry.register(_MemoryCollector(service))
        self._served = False

    def serve(self, port: int, setting: str = "") -> None:
        """Serve /metrics on port (0: do not serve), on ``metrics_host()``; once per instance.

        A port in use is a ``PortInUse`` refusal naming ``setting``, the
        environment variable that moves it.
        """
        if not port or self._served:
            return
        try:
            start_http_server(port, addr=metrics_host(), registry=self.registry)
        except OSError as e:
            where = f"set {setting} to a free port" if setting else "choose another port"
            raise PortInUse(
                f"{self.service}: port {port} for /metrics is in use ({e.strerror}); "
                f"stop what holds it or {where}"
            ) from e
        self._served = True

    async def track_lag(self, consumer: AIOKafkaConsumer, interval_s: float = 1.0) -> None:
        """Update the lag gauge of every assigned topic until cancelled."""
        for topic in {tp.topic for tp in consumer.assignment()}:
            self.dead_letters.labels(self.service, topic)  # a series at 0 before any letter
        while True:
            with contextlib.suppress(Exception):  # a lag reading must never stop a service
                partitions = list(consumer.assignment())
                ends = await consumer.end_offsets(partitions)
                lag: dict[str, int] = {}
                for tp in partitions:
                    lag[tp.topic] = lag.get(tp.topic, 0) + max(
                        0, ends[tp] - await consumer.position(tp)
                    )
                for topic, value in lag.items():
                    self.lag.labels(self.service, topic).set(value)
            await asyncio.sleep(interval_s)
