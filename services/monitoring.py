"""The local monitoring stack from Python: Prometheus and Alertmanager via deploy/local.

Used by the demo and the end-to-end tests: start both on chosen ports, point
Prometheus at the services' /metrics with a file_sd targets file, read the
firing alerts back. Every server binds to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core.events import CollapseDetected, CollapseResolved, Event
from services.kafka import consumer, read_run, start, stop
from streams.collapse_detector import inputs as detector_inputs
from streams.topics import MONITOR_ALERTS

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_SCRIPT = REPO / "deploy" / "local" / "prometheus" / "prometheus.sh"
ALERTMANAGER_SCRIPT = REPO / "deploy" / "local" / "alertmanager" / "alertmanager.sh"


class MonitoringError(RuntimeError):
    """The monitoring stack could not be started or read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringStack:
    """Where the local Prometheus and Alertmanager of a run listen and keep their files."""

    prometheus_port: int
    alertmanager_port: int
    data_dir: Path
    webhook_url: str | None = None

    @property
    def targets_file(self) -> Path:
        """The file_sd targets file of the ``tradingbot`` scrape job."""
        return self.data_dir / "targets.json"

    @property
    def prometheus_url(self) -> str:
        """Prometheus's base URL."""
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        """Alertmanager's base URL."""
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "PROMETHEUS_PORT": str(self.prometheus_port),
            "PROMETHEUS_DATA_DIR": str(self.data_dir / "prometheus"),
            "PROMETHEUS_TARGETS_FILE": str(self.targets_file),
            "ALERTMANAGER_URL": self.alertmanager_url,
            "ALERTMANAGER_PORT": str(self.alertmanager_port),
            "ALERTMANAGER_DATA_DIR": str(self.data_dir / "alertmanager"),
        }
        if self.webhook_url:
            env["ALERTMANAGER_WEBHOOK_URL"] = self.webhook_url
        return env

    def _run(self, script: Path, command: str) -> None:
        result = subprocess.run(
            ["bash", str(script), command],
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise MonitoringError(
                f"{script.name} {command} failed:\n{result.stdout}{result.stderr}"
            )

    def write_targets(self, targets: Mapping[str, int]) -> None:
        """Scrape these services (name -> /metrics port on 127.0.0.1)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        groups = [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}
            for name, port in targets.items()
        ]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)  # atomic: Prometheus never reads half a file

    def start(self, targets: Mapping[str, int]) -> None:
        """Install if needed, then start Alertmanager and Prometheus and wait until ready."""
        self.write_targets(targets)
        for script in (ALERTMANAGER_SCRIPT, PROMETHEUS_SCRIPT):
            self._run(script, "install")
            self._run(script, "start")

    def stop(self) -> None:
        """Stop both (idempotent)."""
        for script in (PROMETHEUS_SCRIPT, ALERTMANAGER_SCRIPT):
            subprocess.run(
                ["bash", str(script), "stop"], env=self._env(), capture_output=True, check=False
            )

    def get(self, url: str) -> Any:
        """GET a JSON API of the stack."""
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback only
            return json.loads(response.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant PromQL query's result vector."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = self.get(url)
        if body.get("status") != "success":
            raise MonitoringError(f"query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def firing(self) -> list[dict[str, Any]]:
        """Alerts Prometheus evaluates as firing."""
        alerts = self.get(f"{self.prometheus_url}/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a.get("state") == "firing"]

    def received(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds."""
        result: list[dict[str, Any]] = self.get(f"{self.alertmanager_url}/api/v2/alerts")
        return result


async def wait_for_group(
    bootstrap: str, group_id: str, topic: str, timeout_s: float = 120.0
) -> None:
    """Wait until consumer group ``group_id`` has read everything ``topic`` holds now.

    Read means no record left past the committed offset: the marker that
    ends a transaction has an offset but is never delivered, so a group that
    read a transactional topic to its end may have committed the marker's
    offset, one short of the end.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tradingbot-monitor")
    reader = consumer(bootstrap, "tradingbot-monitor")
    await admin.start()
    try:
        await start(reader, bootstrap)
        try:
            deadline = time.monotonic() + timeout_s
            await _wait_for_topic(admin, reader, group_id, topic, deadline, timeout_s)
        finally:
            await stop(reader)
    finally:
        await admin.close()


async def start_detector_at_end(bootstrap: str, app_id: str) -> None:
    """Start the consumer groups of a new collapse detector ``app_id`` at the end of its inputs.

    The detector then watches from now on instead of reading the whole
    history of a long-lived broker; groups with commits are left alone, so a
    restarted worker resumes where it was.
    """
    for group, topic in detector_inputs(app_id):
        await start_group_at_end(bootstrap, group, [topic])


async def wait_for_detector(bootstrap: str, app_id: str, timeout_s: float = 120.0) -> None:
    """Wait until the collapse detector ``app_id`` has taken in everything on the ledger now.

    Its inputs are a chain (the ledger, re-keyed onto ``monitor.orders``):
    each is waited for once the one before it is read, so what the first
    forwarded is in the second's end.
    """
    deadline = time.monotonic() + timeout_s
    for group, topic in detector_inputs(app_id):
        await wait_for_group(bootstrap, group, topic, max(1.0, deadline - time.monotonic()))


async def _wait_for_topic(
    admin: AIOKafkaAdminClient,
    reader: AIOKafkaConsumer,
    group_id: str,
    topic: str,
    deadline: float,
    timeout_s: float,
) -> None:
    partitions = await _partitions(reader, topic)
    ends = await reader.end_offsets(partitions)
    while True:
        committed = await admin.list_consumer_group_offsets(group_id)
        behind = {
            tp: committed[tp].offset if tp in committed else 0
            for tp in partitions
            if ends[tp] > (committed[tp].offset if tp in committed else 0)
        }
        if not behind or not await _records_after(reader, behind, ends):
            return
        if time.monotonic() > deadline:
            raise MonitoringError(
                f"consumer group {group_id} did not catch up with {topic} in {timeout_s:.0f}s"
            )
        await asyncio.sleep(0.5)


async def _records_after(
    reader: AIOKafkaConsumer,
    offsets: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
) -> bool:
    """Tell whether any partition holds a record from ``offsets`` on, before ``ends``."""
    reader.assign(list(offsets))
    for tp, offset in offsets.items():
        reader.seek(tp, offset)
    for _ in range(20):
        batch = await reader.getmany(*offsets, timeout_ms=100)
        if any(records for records in batch.values()):
            return True
        positions = [await reader.position(tp) for tp in offsets]
        if all(p >= ends[tp] for p, tp in zip(positions, offsets, strict=True)):
            return False
    return True


async def wait_for_members(bootstrap: str, group_id: str, timeout_s: float = 120.0) -> None:
    """Wait until consumer group ``group_id`` is stable with a member: a worker has joined
    and holds its partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tradingbot-monitor")
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            for response in await admin.describe_consumer_groups([group_id]):
                for group in response.groups:
                    # (error_code, group_id, state, protocol_type, protocol, members, ...)
                    if group[1] == group_id and group[2] == "Stable" and group[5]:
                        return
            if time.monotonic() > deadline:
                raise MonitoringError(f"no worker joined consumer group {group_id} in {timeout_s}s")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def start_group_at_end(bootstrap: str, group_id: str, topics: list[str]) -> None:
    """Commit the current end offsets of ``topics`` for a consumer group that has none yet.

    A new detector group then watches from now on instead of reading the
    whole history of a long-lived broker; a group with commits is left alone,
    so a restarted worker resumes where it was.
    """
    client = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    # On a new broker the first group call waits for __consumer_offsets to exist;
    # aiokafka retries it and logs each retry as an error. Keep that out of the demo's output.
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(logging.CRITICAL)
    await start(client, bootstrap)
    try:
        partitions = [tp for topic in topics for tp in await _partitions(client, topic)]
        committed = {tp: await client.committed(tp) for tp in partitions}
        if any(offset is not None for offset in committed.values()):
            return
        client.assign(partitions)
        ends = await client.end_offsets(partitions)
        await client.commit({tp: ends[tp] for tp in partitions})
    finally:
        await stop(client)


async def _partitions(reader: Any, topic: str) -> list[TopicPartition]:
    for _ in range(100):
        found = reader.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await reader._client.force_metadata_update()  # noqa: SLF001
        await asyncio.sleep(0.05)
    raise MonitoringError(f"topic {topic} does not exist")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentAlerts:
    """The collapse alerts of one agent in a run."""

    agent: str
    detected: tuple[CollapseDetected, ...]
    resolved: tuple[CollapseResolved, ...]

    @property
    def first_after_actions(self) -> int:
        """Actions in the window when the first alert was raised."""
        return min(a.actions for a in self.detected) if self.detected else 0


async def read_alerts(bootstrap: str, run_id: str) -> dict[str, AgentAlerts]:
    """The run's collapse alerts from ``monitor.alerts``, by agent."""
    events: list[Event] = await read_run(bootstrap, MONITOR_ALERTS.name, run_id)
    agents = sorted({e.agent for e in events if isinstance(e, CollapseDetected | CollapseResolved)})
    return {
        agent: AgentAlerts(
            agent=agent,
            detected=tuple(
                e for e in events if isinstance(e, CollapseDetected) and e.agent == agent
            ),
            resolved=tuple(
                e for e in events if isinstance(e, CollapseResolved) and e.agent == agent
            ),
        )
        for agent in agents
    }
