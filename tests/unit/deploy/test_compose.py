"""The compose files, read as YAML: what would break `docker compose up` or leak a secret.

`make compose-test` (tests/compose) runs the stack itself on a real Docker
Engine; these checks need no engine and run in `make test`.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
OFFLINE = yaml.safe_load((DEPLOY / "docker-compose.offline.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
ENV_EXAMPLE = (DEPLOY / ".env.example").read_text()
PYTHON_SERVICES = (
    "init", "market-replay", "symbol-agent", "portfolio-manager", "collapse-detector",
    "timescale-sink",
)  # fmt: skip
SECRETS = ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


def test_compose_runs_the_whole_stack() -> None:
    expected = {
        "kafka", "init", "market-replay", "symbol-agent", "portfolio-manager",
        "collapse-detector", "timescale-sink", "timescaledb", "prometheus", "alertmanager",
        "grafana",
    }  # fmt: skip
    assert set(SERVICES) == expected


def test_every_python_service_runs_a_module_of_the_project() -> None:
    for name in PYTHON_SERVICES:
        command = SERVICES[name]["command"]
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, name


def test_every_long_lived_service_has_a_health_check_and_a_restart_policy() -> None:
    for name, service in SERVICES.items():
        if name == "init":
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"], name
        assert service["restart"] in {"on-failure", "unless-stopped"}, name


def test_services_wait_for_what_they_need_by_condition() -> None:
    assert SERVICES["init"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "timescaledb": {"condition": "service_healthy"},
    }
    for name in PYTHON_SERVICES[1:]:
        assert SERVICES[name]["depends_on"] == {
            "init": {"condition": "service_completed_successfully"}
        }, name
    for name, service in SERVICES.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"


def test_stateful_services_keep_their_data_in_named_volumes() -> None:
    for name, target in {
        "kafka": "/var/lib/kafka/data",
        "timescaledb": "/var/lib/postgresql/data",
        "prometheus": "/prometheus",
        "alertmanager": "/alertmanager",
        "grafana": "/var/lib/grafana",
    }.items():
        volumes = {v.split(":")[1]: v.split(":")[0] for v in SERVICES[name]["volumes"]}
        assert volumes[target] in COMPOSE["volumes"], name


def test_every_mounted_file_exists() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source not in COMPOSE["volumes"]:
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_published_ports_bind_to_loopback_only() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), name


def test_no_secret_has_a_default_and_the_example_env_names_each_without_a_value() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, secret
        assert all(u.startswith(":?") for u in uses), f"{secret}: {uses}"
        assert re.search(rf"^{secret}=$", ENV_EXAMPLE, re.M), secret
    assert "tradingbot@timescaledb" not in text  # no password in a URL


def test_example_env_sets_every_variable_the_compose_file_requires() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    given = set(re.findall(r"^(\w+)=", ENV_EXAMPLE, re.M))
    assert required <= given


def test_prometheus_scrapes_each_service_of_the_compose_file_on_its_metrics_port() -> None:
    (job,) = [j for j in PROMETHEUS["scrape_configs"] if j["job_name"] == "tradingbot"]
    targets = {t for static in job["static_configs"] for t in static["targets"]}
    for sd in job["dns_sd_configs"]:
        targets |= {f"{n}:{sd['port']}" for n in sd["names"]}
    assert targets == {
        "market-replay:9101", "symbol-agent:9102", "portfolio-manager:9103",
        "collapse-detector:9104", "timescale-sink:9106",
    }  # fmt: skip
    for target in targets:
        name, port = target.split(":")
        env = SERVICES[name]["environment"]
        assert port in {str(v) for k, v in env.items() if k.endswith("_METRICS_PORT")}, target


def test_services_serve_metrics_beyond_their_container() -> None:
    env = SERVICES["market-replay"]["environment"]
    assert env["TRADINGBOT_METRICS_HOST"] == "0.0.0.0"
    assert env["TRADINGBOT_BOOTSTRAP"] == "kafka:9092"


def test_offline_override_replaces_every_image_but_grafana_and_pulls_nothing() -> None:
    offline: dict[str, Any] = OFFLINE["services"]
    assert set(offline) == set(SERVICES)
    assert offline["grafana"] == {"profiles": ["grafana"]}
    for name in ("kafka", "timescaledb", "prometheus", "alertmanager"):
        assert offline[name]["image"].startswith("tradingbot-offline/"), name
        assert offline[name]["pull_policy"] == "never", name
        dockerfile = DEPLOY / "offline" / name / "Dockerfile"
        assert dockerfile.is_file(), dockerfile
    for name in PYTHON_SERVICES:
        assert offline[name]["build"]["args"]["PYTHON_IMAGE"] == "tradingbot-offline/python:3.11"
