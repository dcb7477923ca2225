"""Prometheus and Alertmanager configuration: checked by the real tools.

promtool (Debian package `prometheus`) and amtool (`prometheus-alertmanager`)
must be installed: `make test` runs `deploy/local/prometheus/prometheus.sh
install` and `deploy/local/alertmanager/alertmanager.sh install` first. A
missing tool fails these tests (it does not skip them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
RULES = RULES_DIR / "tradingbot.yml"
RULE_TESTS = RULES_DIR / "tradingbot.test.yml"
COMPOSE_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
PROMETHEUS_SH = REPO / "deploy" / "local" / "prometheus" / "prometheus.sh"
METRICS_DOC = REPO / "docs" / "metrics.md"

INSTALL_HINT = {
    "promtool": "deploy/local/prometheus/prometheus.sh install",
    "amtool": "deploy/local/alertmanager/alertmanager.sh install",
}
METRIC_NAME = re.compile(r"\btradingbot_[a-z_]+")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None and os.access(f"/usr/bin/{name}", os.X_OK):
        path = f"/usr/bin/{name}"  # PATH without /usr/bin
    if path is None:
        pytest.fail(f"{name} not found: run `{INSTALL_HINT[name]}` (as root; apt-get)")
    return path


def run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    """Runs a command in the repo; fails with its output unless it exits 0. Returns stdout."""
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    out = f"$ {' '.join(str(a) for a in args)}\n{proc.stdout}{proc.stderr}"
    assert proc.returncode == 0, out
    return proc.stdout


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def rule_files() -> list[Path]:
    return sorted(p for p in RULES_DIR.glob("*.yml") if not p.name.endswith(".test.yml"))


# ---------------------------------------------------------------- promtool


def test_rules_pass_promtool_check() -> None:
    out = run(tool("promtool"), "check", "rules", *rule_files())
    assert "SUCCESS" in out, out


def test_rules_pass_their_promtool_unit_tests() -> None:
    run(tool("promtool"), "test", "rules", RULE_TESTS)


def test_compose_config_passes_promtool_check() -> None:
    run(tool("promtool"), "check", "config", COMPOSE_CONFIG)


def test_compose_config_loads_every_rule_file_and_scrapes_every_service() -> None:
    config = load(COMPOSE_CONFIG)
    loaded = {(COMPOSE_CONFIG.parent / f).resolve() for f in config["rule_files"]}
    assert loaded == {p.resolve() for p in rule_files()}

    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tradingbot"]
    targets = {t: g["labels"]["service"] for g in job["static_configs"] for t in g["targets"]}
    # The symbol agent's replicas are found by DNS (no trainer in the compose stack).
    (agents,) = job["dns_sd_configs"]
    targets |= {f"{name}:{agents['port']}": name for name in agents["names"]}
    doc = METRICS_DOC.read_text()
    assert sorted(targets.values()) == sorted(
        [
            "market-replay", "symbol-agent", "portfolio-manager", "collapse-detector",
            "timescale-sink",
        ]
    )  # fmt: skip
    for target, service in targets.items():
        host, port = target.split(":")
        assert host == service
        assert f"{service} {port}" in doc, f"{target}: not the port of docs/metrics.md"
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]


@pytest.mark.parametrize("alertmanager_url", ["http://127.0.0.1:19093", ""])
def test_generated_local_config_passes_promtool_check(
    tmp_path: Path, alertmanager_url: str
) -> None:
    targets = tmp_path / "targets.json"
    targets.write_text(
        json.dumps([{"targets": ["127.0.0.1:19104"], "labels": {"service": "collapse-detector"}}])
    )
    config = tmp_path / "prometheus.yml"
    env = {
        "TRADINGBOT_CACHE": str(tmp_path / "cache"),
        "PROMETHEUS_PORT": "19090",
        "PROMETHEUS_TARGETS_FILE": str(targets),
        "ALERTMANAGER_URL": alertmanager_url,
    }
    run("bash", PROMETHEUS_SH, "config", config, env=env)
    run(tool("promtool"), "check", "config", config)

    generated = load(config)
    assert generated["global"]["scrape_interval"] == "1s"
    assert generated["global"]["evaluation_interval"] == "1s"
    assert [Path(f) for f in generated["rule_files"]] == rule_files()
    (job,) = [j for j in generated["scrape_configs"] if j["job_name"] == "tradingbot"]
    assert job["file_sd_configs"][0]["files"] == [str(targets)]
    alertmanagers = generated["alerting"]["alertmanagers"]
    if alertmanager_url:
        assert alertmanagers[0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    else:
        assert alertmanagers == []
    assert not (tmp_path / "cache").exists(), "`config` must not create the data dir"


# ---------------------------------------------------------------- amtool


def test_alertmanager_config_passes_amtool_check() -> None:
    run(tool("amtool"), "check-config", ALERTMANAGER_CONFIG)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=ActionCollapseCritical", "agent=AAPL", "severity=critical"], "critical"),
        (["alertname=ActionCollapseWarning", "agent=AAPL", "severity=warning"], "warning"),
        (["alertname=Other"], "warning"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    out = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels
    )
    assert out.strip() == receiver


def test_critical_collapse_inhibits_the_warning_of_the_same_agent() -> None:
    config = load(ALERTMANAGER_CONFIG)
    names = {rule["alert"] for rule in alert_rules()}
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['alertname="ActionCollapseCritical"']
    assert inhibit["target_matchers"] == ['alertname="ActionCollapseWarning"']
    assert inhibit["equal"] == ["agent"]
    assert {"ActionCollapseCritical", "ActionCollapseWarning"} <= names
    assert config["route"]["group_by"] == ["alertname", "agent"]


# ---------------------------------------------------------------- the rules themselves


def test_every_alert_has_severity_and_annotations_with_its_value() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        for key in ("summary", "description"):
            assert "$value" in rule["annotations"][key], f"{rule['alert']}: {key} hides the value"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    cases: dict[str, list[int]] = {}
    for group in load(RULE_TESTS)["tests"]:
        for case in group.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(len(case.get("exp_alerts") or []))
    for rule in alert_rules():
        counts = cases.get(rule["alert"], [])
        assert any(n > 0 for n in counts), f"{rule['alert']}: no promtool case where it fires"
        assert any(n == 0 for n in counts), f"{rule['alert']}: no promtool case where it is quiet"


def test_every_metric_of_the_rules_is_documented() -> None:
    documented = set(METRIC_NAME.findall(METRICS_DOC.read_text()))
    used = {name for rule in alert_rules() for name in METRIC_NAME.findall(rule["expr"])}
    assert used, "no tradingbot_ metric found in the rules"
    assert used <= documented, f"not in docs/metrics.md: {sorted(used - documented)}"
