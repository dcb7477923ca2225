"""docker compose cannot run here (no engine): its file is checked for what would break it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())


def test_compose_runs_the_whole_stack() -> None:
    expected = {
        "kafka", "topics", "market-replay", "symbol-agent", "portfolio-manager",
        "collapse-detector", "timescaledb", "prometheus", "alertmanager", "grafana",
    }  # fmt: skip
    assert expected <= set(SERVICES)


def test_every_python_service_runs_a_module_of_the_project() -> None:
    for name, service in SERVICES.items():
        command = service.get("command", [])
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, name


def test_every_mounted_file_exists() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_prometheus_scrapes_each_service_of_the_compose_file_on_its_metrics_port() -> None:
    targets = {
        target
        for job in PROMETHEUS["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name, port in {
        "market-replay": 9101, "symbol-agent": 9102, "portfolio-manager": 9103,
        "collapse-detector": 9104,
    }.items():  # fmt: skip
        assert f"{name}:{port}" in targets
        assert name in SERVICES


def test_published_ports_bind_to_loopback_only() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), name


def test_services_serve_metrics_beyond_their_container() -> None:
    env = SERVICES["market-replay"]["environment"]
    assert env["TRADINGBOT_METRICS_HOST"] == "0.0.0.0"
    assert env["TRADINGBOT_BOOTSTRAP"] == "kafka:9092"
