"""The generated Grafana dashboards: reproducible, on documented metrics, provisioned."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import dashboards, projection
from services.db.queries import QUERIES

REPO = Path(__file__).resolve().parents[3]
GRAFANA = REPO / "grafana"
METRICS_DOC = REPO / "docs" / "metrics.md"
ALERT_RULES = REPO / "deploy" / "prometheus" / "rules" / "tradingbot.yml"
EXPECTED_UIDS = {"tradingbot-agent-health", "tradingbot-portfolio", "tradingbot-pipeline"}
"""The Prometheus dashboards."""
PROJECTION_UID = "tradingbot-projection"
"""The SQL dashboard of the TimescaleDB projection (grafana/projection.py)."""
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
METRIC_NAME = re.compile(r"\btradingbot_[a-z0-9_]+")


def documented_metrics() -> dict[str, str]:
    """Return `{name: type}` of every metric in the tables of docs/metrics.md."""
    row = re.compile(r"^\|\s*`([A-Za-z_:][A-Za-z0-9_:]*)`\s*\|\s*([^|]+?)\s*\|", re.MULTILINE)
    return {name: kind for name, kind in row.findall(METRICS_DOC.read_text(encoding="utf-8"))}


def undocumented_names(expr: str, documented: dict[str, str]) -> set[str]:
    """Return the tradingbot_* names in `expr` that docs/metrics.md does not define.

    A histogram's series `<name>_bucket`, `_sum` and `_count` count as `<name>`
    only where `<name>` is documented as a histogram.
    """
    missing = set()
    for name in METRIC_NAME.findall(expr):
        if name in documented:
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is None or documented.get(base) != "histogram":
            missing.add(name)
    return missing


def load_checked_in() -> dict[str, dict[str, Any]]:
    """Return the checked-in dashboards by uid."""
    loaded = {}
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        loaded[board["uid"]] = board
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the non-row panels of a dashboard JSON, rows' nested panels included."""
    found = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def exprs(board: dict[str, Any]) -> list[str]:
    """Return every PromQL expression of a dashboard JSON: targets and annotations."""
    found = [t["expr"] for panel in panels(board) for t in panel.get("targets", []) if "expr" in t]
    found += [a["expr"] for a in board["annotations"].get("list", []) if "expr" in a]
    return found


def test_generator_reproduces_the_checked_in_json_byte_for_byte(tmp_path: Path) -> None:
    written = dashboards.write_dashboards(tmp_path)

    checked_in = sorted(p.name for p in (GRAFANA / "dashboards").glob("*.json"))
    assert sorted(p.name for p in written) == checked_in, "regenerate: python -m grafana.dashboards"
    for path in written:
        expected = (GRAFANA / "dashboards" / path.name).read_bytes()
        assert path.read_bytes() == expected, f"{path.name} is stale: python -m grafana.dashboards"


def test_rendering_twice_gives_the_same_text() -> None:
    for make in dashboards.DASHBOARDS:
        assert dashboards.render(make()) == dashboards.render(make())


def test_docs_table_parses_into_the_documented_metrics() -> None:
    documented = documented_metrics()

    assert documented["tradingbot_replay_step_seconds"] == "histogram"
    assert documented["tradingbot_agent_action_diversity_ratio"] == "gauge"
    assert len(documented) > 30


def test_histogram_suffix_is_accepted_only_on_documented_histograms() -> None:
    documented = documented_metrics()

    assert (
        undocumented_names("rate(tradingbot_replay_step_seconds_bucket[1m])", documented) == set()
    )
    assert undocumented_names("tradingbot_agent_window_actions_count", documented) == {
        "tradingbot_agent_window_actions_count"
    }
    assert undocumented_names("tradingbot_agent_made_up_ratio", documented) == {
        "tradingbot_agent_made_up_ratio"
    }


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_every_query_uses_only_metrics_documented_in_docs(uid: str) -> None:
    documented = documented_metrics()
    board = load_checked_in()[uid]

    found = {name for expr in exprs(board) for name in undocumented_names(expr, documented)}

    assert found == set(), f"{uid} queries metrics missing from docs/metrics.md"
    assert all(METRIC_NAME.search(e) or re.match(r"up\b|ALERTS\b", e) for e in exprs(board))


def test_every_dashboard_has_its_uid_a_title_and_the_prometheus_datasource() -> None:
    boards = load_checked_in()

    assert set(boards) == EXPECTED_UIDS | {PROJECTION_UID}
    for uid, board in boards.items():
        if uid == PROJECTION_UID:
            continue
        assert board["title"].strip(), uid
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{uid}: panel ids repeat"
        assert panels(board), uid
        for panel in panels(board):
            where = f"{uid} / {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, where
            assert panel["targets"], where
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert all(ref_ids) and len(ref_ids) == len(set(ref_ids)), where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "prometheus", where
                assert target["expr"].strip(), where
        for annotation in board["annotations"].get("list", []):
            assert annotation["datasource"]["uid"] == "prometheus", uid


def test_agent_health_filters_every_agent_query_on_the_agent_variable() -> None:
    board = load_checked_in()["tradingbot-agent-health"]
    (variable,) = board["templating"]["list"]

    assert variable["name"] == "agent"
    assert variable["query"] == "label_values(tradingbot_agent_window_actions, agent)"
    assert variable["multi"] and variable["includeAll"]
    assert variable["datasource"]["uid"] == "prometheus"
    for expr in exprs(board):
        assert 'agent=~"$agent"' in expr, expr


def alert_rules() -> dict[str, dict[str, str]]:
    """Return `{alert name: labels}` of the Prometheus alert rules."""
    config = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    return {
        rule["alert"]: rule.get("labels", {})
        for group in config["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def annotated_alerts(board: dict[str, Any]) -> re.Pattern[str]:
    """Return the alertname regex of a dashboard's single ALERTS annotation."""
    (annotation,) = board["annotations"]["list"]
    assert annotation["enable"] is True
    assert annotation["titleFormat"] == "{{alertname}}"
    found = re.search(r'alertname=~"([^"]+)"', annotation["expr"])
    assert found is not None and 'alertstate="firing"' in annotation["expr"]
    return re.compile(found.group(1))


def test_agent_health_annotates_every_collapse_alert_of_the_rules() -> None:
    regex = annotated_alerts(load_checked_in()["tradingbot-agent-health"])
    collapse = {name for name, labels in alert_rules().items() if "metric" in labels}

    assert collapse, "no alert rule carries a metric label"
    assert {name for name in alert_rules() if regex.fullmatch(name)} == collapse


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_every_annotated_alert_name_is_a_rule(uid: str) -> None:
    regex = annotated_alerts(load_checked_in()[uid])
    names = set(alert_rules())

    for alternative in regex.pattern.split("|"):
        assert any(re.fullmatch(alternative, name) for name in names), alternative


def threshold_values(board: dict[str, Any], metric: str) -> list[float]:
    """Return the threshold steps of the time series panel that plots `metric`."""
    (panel,) = [
        p
        for p in panels(board)
        if p["type"] == "timeseries" and any(metric in t["expr"] for t in p["targets"])
    ]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [step["value"] for step in steps if step["value"] is not None]


@pytest.mark.parametrize(
    ("uid", "metric", "values"),
    [
        ("tradingbot-agent-health", "tradingbot_agent_action_diversity_ratio", [0.20, 0.30]),
        ("tradingbot-agent-health", "tradingbot_agent_dominant_kind_ratio", [0.60]),
        ("tradingbot-agent-health", "tradingbot_agent_dominant_bin_ratio", [0.60]),
        ("tradingbot-agent-health", "tradingbot_agent_trade_frequency_ratio", [0.05]),
        ("tradingbot-agent-health", "tradingbot_agent_repeat_run_actions", [5]),
        ("tradingbot-portfolio", "tradingbot_portfolio_drawdown_ratio", [0.15]),
        ("tradingbot-portfolio", "tradingbot_portfolio_rolling_sharpe_ratio", [-0.5]),
        ("tradingbot-pipeline", "tradingbot_kafka_consumer_lag_messages", [10_000]),
        ("tradingbot-pipeline", "tradingbot_process_memory_ratio", [0.90]),
    ],
)
def test_threshold_lines_sit_at_the_plan_values(uid: str, metric: str, values: list[float]) -> None:
    board = load_checked_in()[uid]

    assert threshold_values(board, metric) == pytest.approx(values)


def test_all_exprs_lists_every_panel_query_with_variables_substituted() -> None:
    pairs = dashboards.all_exprs()

    assert {uid for uid, _ in pairs} == EXPECTED_UIDS
    assert not [expr for _, expr in pairs if "$" in expr]
    assert ("tradingbot-agent-health", 'tradingbot_agent_action_diversity_ratio{agent=~".*"}') in (
        pairs
    )
    panel_count = sum(
        len(exprs(b)) - len(b["annotations"].get("list", []))
        for uid, b in load_checked_in().items()
        if uid in EXPECTED_UIDS
    )
    assert len(pairs) == panel_count


def test_every_expr_parses_as_promql(tmp_path: Path) -> None:
    assert shutil.which("promtool"), (
        "promtool is missing: run deploy/local/prometheus/prometheus.sh install (make does)"
    )
    annotations = [
        dashboards.substitute_variables(a["expr"])
        for uid, board in load_checked_in().items()
        if uid in EXPECTED_UIDS
        for a in board["annotations"].get("list", [])
    ]
    queries = [expr for _, expr in dashboards.all_exprs()] + annotations
    rules = {
        "groups": [
            {
                "name": "grafana",
                "rules": [
                    {"record": f"grafana:query_{i}", "expr": q} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")

    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_variables_are_substituted_and_an_unknown_one_raises() -> None:
    assert dashboards.substitute_variables('x{a=~"${agent}"}') == 'x{a=~".*"}'
    with pytest.raises(KeyError):
        dashboards.substitute_variables('x{a="$nope"}')


def test_datasource_provisioning_is_the_compose_prometheus_with_the_dashboards_uid() -> None:
    config = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    (source,) = config["datasources"]

    assert config["apiVersion"] == 1
    assert source["type"] == "prometheus"
    assert source["uid"] == dashboards.DATASOURCE_UID == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True


def test_dashboard_provisioning_loads_the_mounted_dashboards_folder() -> None:
    config = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "tradingbot.yml").read_text(encoding="utf-8")
    )
    (provider,) = config["providers"]

    assert config["apiVersion"] == 1
    assert provider["type"] == "file"
    assert provider["options"]["path"] == dashboards.DASHBOARDS_MOUNT
    assert dashboards.OUTPUT_DIR == GRAFANA / "dashboards"


def test_projection_panels_run_the_documented_queries_on_the_timescaledb_datasource() -> None:
    board = load_checked_in()[PROJECTION_UID]
    sql = [t["rawSql"] for panel in panels(board) for t in panel["targets"]]

    assert all(p["datasource"] == {"type": "postgres", "uid": "timescaledb"} for p in panels(board))
    used = {name for name in QUERIES if any(projection.panel_sql(name) in s for s in sql)}
    assert used == set(QUERIES)
    assert not [s for s in sql if "%(" in s]
    assert [v["name"] for v in board["templating"]["list"]] == ["run_id", "agent"]


def test_timescaledb_datasource_provisioning_matches_the_compose_database() -> None:
    config = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "timescaledb.yml").read_text(encoding="utf-8")
    )
    (source,) = config["datasources"]
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    database = compose["services"]["timescaledb"]["environment"]
    grafana = compose["services"]["grafana"]["environment"]

    assert source["uid"] == "timescaledb" and source["type"] == "postgres"
    assert source["url"] == "timescaledb:5432"
    # No secret in the file: Grafana expands its environment, set like the database's.
    assert source["user"] == "${POSTGRES_USER}"
    assert source["jsonData"]["database"] == "${POSTGRES_DB}"
    assert source["secureJsonData"]["password"] == "${POSTGRES_PASSWORD}"
    for name in ("POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"):
        assert grafana[name] == database[name], name
