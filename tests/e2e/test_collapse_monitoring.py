"""Live collapse detection end to end: real Kafka, faust worker, Prometheus, Alertmanager.

Twelve real symbols for 120 days go through the pipeline with a mixed fleet:
every fourth agent serves the plan's failure (a discrete policy that always
answers BUY_SMALL), the others the momentum baseline. The collapse detector
runs as its own worker process and is restarted in the middle of the run.
Prometheus scrapes every service; Alertmanager routes to a webhook receiver
in this test.

The detector's windows are fed by the decisions the portfolio manager
recorded on the ledger. The bound: a collapsed agent raises
``CollapseDetected`` once its window holds ``min_actions`` (50) actions, i.e.
by its 50th action.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.events import StepCompleted
from grafana.dashboards import all_exprs
from rl_agents.data import load_bars, universe
from services.kafka import read_topic
from services.monitoring import (
    AgentAlerts,
    MonitoringError,
    MonitoringStack,
    read_alerts,
    start_detector_at_end,
    wait_for_detector,
    wait_for_members,
)
from services.pipeline import run_lockstep
from services.symbol_agent.app import AgentConfig
from streams.topics import SIM_CLOCK

SYMBOLS, STEPS, EVERY, RESTART_AT = 12, 120, 4, 60
REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules" / "tradingbot.yml"


def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s:.0f}s")
        time.sleep(0.5)


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@dataclass
class Run:
    run_id: str
    collapsed: set[str]
    healthy: set[str]
    alerts: dict[str, AgentAlerts]
    stack: MonitoringStack
    detector_metrics: str
    webhook: list[dict[str, Any]] = field(default_factory=list)


def _detector(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streams.collapse_detector"],
        env=env, cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def _restart_at_step(
    bootstrap: str, run_id: str, step: int, restart: Callable[[], None]
) -> None:
    await read_topic(
        bootstrap,
        SIM_CLOCK.name,
        keep=lambda e: isinstance(e, StepCompleted) and e.run_id == run_id,
        until=lambda e: isinstance(e, StepCompleted) and e.step >= step,
        timeout_s=300,
    )
    await asyncio.to_thread(restart)


@pytest.fixture(scope="module")
def monitored_run(
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    port_finder: Callable[[int], list[int]],
) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("monitoring")
    prom, am, hook, replay_p, agent_p, pm_p, det_p = port_finder(7)
    _Webhook.received = []
    server = HTTPServer(("127.0.0.1", hook), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stack = MonitoringStack(
        prometheus_port=prom,
        alertmanager_port=am,
        data_dir=tmp,
        webhook_url=f"http://127.0.0.1:{hook}/alerts",
    )
    run_id = f"e2e-collapse-{int(time.time())}"
    group = f"collapse-detector-{run_id}"
    frame = universe(load_bars("bytetheory"), SYMBOLS, start=20, steps=STEPS)
    collapsed = {s for j, s in enumerate(frame.symbols) if j % EVERY == 0}
    env = {
        **os.environ,
        "TRADINGBOT_BOOTSTRAP": kafka_bootstrap,
        "TRADINGBOT_DETECTOR_APP_ID": group,
        "TRADINGBOT_DETECTOR_RUN_ID": run_id,
        "TRADINGBOT_DETECTOR_METRICS_PORT": str(det_p),
        "TRADINGBOT_LOG_LEVEL": "info",  # the worker's rebalances and recovery, in its log
    }
    log = tmp / "collapse-detector.log"
    stack.start(
        {
            "market-replay": replay_p,
            "symbol-agent": agent_p,
            "portfolio-manager": pm_p,
            "collapse-detector": det_p,
        }
    )
    asyncio.run(start_detector_at_end(kafka_bootstrap, group))
    detector = _detector(env, log)
    # The restart at step 60 is of a worker that has joined its group, not of one still starting.
    asyncio.run(wait_for_members(kafka_bootstrap, group, timeout_s=180))

    def restart() -> None:
        nonlocal detector
        detector.send_signal(signal.SIGTERM)
        assert detector.wait(timeout=60) == 0, log.read_text()[-3000:]
        detector = _detector(env, log)
        # The restart at step 60 is of a running worker: let it join its group first.
        asyncio.run(wait_for_members(kafka_bootstrap, group, timeout_s=180))

    async def scenario() -> None:
        await asyncio.gather(
            run_lockstep(
                bootstrap=kafka_bootstrap,
                run_id=run_id,
                frame=frame,
                agent=AgentConfig(fleet="mixed", collapsed_every=EVERY),
                metrics_ports=(replay_p, agent_p, pm_p),
            ),
            _restart_at_step(kafka_bootstrap, run_id, RESTART_AT, restart),
        )

    try:
        asyncio.run(scenario())
        try:
            asyncio.run(wait_for_detector(kafka_bootstrap, group, timeout_s=180))
        except MonitoringError as e:
            raise AssertionError(f"{e}; the worker's log ends:\n{log.read_text()[-6000:]}") from e
        alerts = asyncio.run(read_alerts(kafka_bootstrap, run_id))
        yield Run(
            run_id=run_id,
            collapsed=collapsed,
            healthy=set(frame.symbols) - collapsed,
            alerts=alerts,
            stack=stack,
            detector_metrics=_metrics(det_p),
            webhook=_Webhook.received,
        )
    finally:
        detector.terminate()
        detector.wait(timeout=60)
        stack.stop()
        server.shutdown()


def test_collapsed_agents_raise_collapse_detected_by_their_50th_action(
    monitored_run: Run,
) -> None:
    assert set(monitored_run.alerts) == monitored_run.collapsed
    for agent in monitored_run.collapsed:
        detected = monitored_run.alerts[agent].detected
        metrics = {(d.metric, d.severity) for d in detected}
        assert {
            ("dominance", "warning"),
            ("entropy", "critical"),
            ("repeats", "warning"),
        } <= metrics
        assert monitored_run.alerts[agent].first_after_actions <= 50


def test_healthy_agents_in_the_same_run_raise_none(monitored_run: Run) -> None:
    assert not monitored_run.healthy & set(monitored_run.alerts)


def test_restarting_the_worker_mid_run_keeps_the_windows(monitored_run: Run) -> None:
    # Reset windows would hold only the actions after the restart (60), and
    # would raise every alert a second time once they held 50 actions again.
    counts = {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^tradingbot_agent_window_actions\{agent="([A-Z]+)"\} (\S+)$',
            monitored_run.detector_metrics,
            re.MULTILINE,
        )
    }
    assert counts == dict.fromkeys(monitored_run.collapsed | monitored_run.healthy, float(STEPS))
    for agent in monitored_run.collapsed:
        keys = [(d.metric, d.severity) for d in monitored_run.alerts[agent].detected]
        assert len(keys) == len(set(keys)), keys


def test_prometheus_fires_the_collapse_alert_and_alertmanager_delivers_it(
    monitored_run: Run,
) -> None:
    stack = monitored_run.stack

    def firing() -> set[str]:
        return {
            a["labels"]["agent"]
            for a in stack.firing()
            if a["labels"]["alertname"] == "ActionCollapseCritical"
        }

    def delivered() -> set[str]:
        return {
            alert["labels"]["agent"]
            for payload in monitored_run.webhook
            for alert in payload["alerts"]
            if alert["labels"]["alertname"] == "ActionCollapseCritical"
            and alert["status"] == "firing"
        }

    eventually(lambda: firing() == monitored_run.collapsed, 90, "Prometheus fires for each")
    eventually(
        lambda: delivered() == monitored_run.collapsed, 90, "the webhook receives each alert"
    )
    assert all(p["receiver"] == "critical" for p in monitored_run.webhook if p["status"])


# Series that cannot exist in this stack, and why.
ABSENT = {
    "tradingbot_training_": "no trainer runs in this test (the training issue adds it)",
}


def _metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(tradingbot_[a-z0-9_]+|up)\b", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_every_dashboard_query_returns_data(monitored_run: Run) -> None:
    stack = monitored_run.stack
    empty = []
    for uid, expr in all_exprs():
        if any(prefix in expr for prefix in ABSENT) or "== 1" in expr:
            continue
        if not stack.query(expr):
            empty.append((uid, expr))
    assert not empty


def test_every_metric_an_alert_rule_reads_has_data(monitored_run: Run) -> None:
    rules = yaml.safe_load(RULES.read_text())
    names = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in _metric_names(rule["expr"])
    }
    missing = [
        name
        for name in sorted(names)
        if not any(name.startswith(prefix) for prefix in ABSENT)
        and not monitored_run.stack.query(name if name == "up" else f"{{__name__=~'{name}.*'}}")
    ]
    assert not missing
