"""Generate the Grafana dashboards of the stack as code.

Each dashboard is one function that returns the dashboard built with the
grafana-foundation-sdk builders; `main` writes them as JSON to
`grafana/dashboards/<uid>.json`, which Grafana provisions from files
(grafana/provisioning/). Regenerate with `python -m grafana.dashboards`.

Every query reads only the metrics of docs/metrics.md (plus Prometheus' own
`up` and `ALERTS`), through the Prometheus datasource of uid `prometheus`.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    GraphTresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    AnnotationQuery,
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    FieldColorModeId,
    Panel,
    RowPanel,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from grafana.projection import projection

DATASOURCE_UID = "prometheus"
"""Uid of the Prometheus datasource (grafana/provisioning/datasources/prometheus.yml)."""

OUTPUT_DIR = Path(__file__).resolve().parent / "dashboards"
"""Where `main` writes the JSON: the folder Grafana's file provider loads."""

DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"
"""Where the container mounts OUTPUT_DIR (grafana/provisioning/dashboards/tradingbot.yml)."""

TAG = "tradingbot"

VARIABLE_VALUES = {"agent": ".*"}
"""What `all_exprs` puts for each template variable: the value Grafana sends for "All"."""

# Collapse thresholds of the plan; keep them equal to the alert rules in deploy/prometheus/.
DIVERSITY_WARNING = 0.30
DIVERSITY_CRITICAL = 0.20
DOMINANCE_MAX = 0.60
TRADE_FREQUENCY_MIN = 0.05
REPEATS_MAX = 5
# Portfolio thresholds of the plan.
DRAWDOWN_MAX = 0.15
SHARPE_MIN = -0.5
# Pipeline alert thresholds of deploy/prometheus/rules/tradingbot.yml.
CONSUMER_LAG_MAX = 10_000
MEMORY_MAX = 0.90

# The alerts each dashboard annotates (names of deploy/prometheus/rules/tradingbot.yml).
COLLAPSE_ALERTS = "Action.*|LowTradeFrequency"
PORTFOLIO_ALERTS = "PortfolioDrawdown|RollingSharpeLow"
PIPELINE_ALERTS = "ConsumerLag|DeadLetterGrowth|MemoryHigh|ServiceDown"
ENTROPY_BINS = 20  # diversity = entropy / ln(20)

AGENT = 'agent=~"$agent"'
RATE_WINDOW = "1m"
INCREASE_WINDOW = "5m"

GREEN = "green"
ORANGE = "orange"
RED = "red"


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression of a panel and the legend of its series."""

    expr: str
    legend: str = ""


def datasource() -> DataSourceRef:
    """Return a reference to the Prometheus datasource, by uid."""
    return DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


def _targets(queries: Sequence[Query], *, table_format: bool = False) -> list[Builder[Dataquery]]:
    """Return one Prometheus target per query, refIds A, B, ...; instant ones for a table."""
    targets: list[Builder[Dataquery]] = []
    for ref_id, query in zip(string.ascii_uppercase, queries, strict=False):
        target = (
            prometheus.Dataquery()
            .ref_id(ref_id)
            .datasource(datasource())
            .expr(query.expr)
            .legend_format(query.legend or "__auto")
        )
        if table_format:
            targets.append(target.instant().format(PromQueryFormat.TABLE))
        else:
            targets.append(target.range())
    return targets


def _thresholds(base: str, *steps: tuple[float, str]) -> dashboard.ThresholdsConfig:
    """Return absolute thresholds: `base` below the first step, then each step's color."""
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps(
            [Threshold(value=None, color=base)] + [Threshold(value=v, color=c) for v, c in steps]
        )
    )


def _timeseries(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str,
    thresholds: dashboard.ThresholdsConfig | None = None,
    min_value: float | None = None,
    max_value: float | None = None,
    width: int = 12,
    height: int = 8,
    tooltip: TooltipDisplayMode = TooltipDisplayMode.MULTI,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .targets(_targets(queries))
        .unit(unit)
        .span(width)
        .height(height)
        .color_scheme(dashboard.FieldColor().mode(FieldColorModeId.PALETTE_CLASSIC))
        .line_width(1)
        .fill_opacity(0)
        .legend(
            common_builder.VizLegendOptions()
            .show_legend(True)
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
        )
        .tooltip(common_builder.VizTooltipOptions().mode(tooltip).sort(SortOrder.DESCENDING))
    )
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            common_builder.GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.DASHED)
        )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def _stat(
    title: str,
    description: str,
    query: Query,
    *,
    unit: str,
    thresholds: dashboard.ThresholdsConfig,
    width: int = 6,
    height: int = 4,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .targets(_targets([query]))
        .unit(unit)
        .span(width)
        .height(height)
        .thresholds(thresholds)
        .color_scheme(dashboard.FieldColor().mode(FieldColorModeId.THRESHOLDS))
        .color_mode(BigValueColorMode.VALUE)
        .graph_mode(BigValueGraphMode.AREA)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


class PrometheusAnnotation(AnnotationQuery):
    """An annotation query with the Prometheus datasource's own formatting fields.

    The SDK's AnnotationQuery carries `expr` but not `titleFormat`, `textFormat`
    and `tagKeys`, without which every marker would be blank; they are added here.
    """

    def __init__(
        self, *, name: str, expr: str, title_format: str, text_format: str, tag_keys: str
    ) -> None:
        super().__init__(name=name, datasource=datasource(), enable=True, icon_color=RED, expr=expr)
        self.title_format = title_format
        self.text_format = text_format
        self.tag_keys = tag_keys

    def to_json(self) -> dict[str, object]:
        """Return the JSON of the query with the Prometheus fields."""
        payload = super().to_json()
        payload["titleFormat"] = self.title_format
        payload["textFormat"] = self.text_format
        payload["tagKeys"] = self.tag_keys
        payload["useValueForTime"] = False
        return payload


class AlertAnnotation(Builder[AnnotationQuery]):
    """Build an annotation of the firing Prometheus alerts whose name matches a regex.

    Each marker is titled by the alert name; its text and tags are the alert's
    `labels` (the rules in deploy/prometheus/rules/ set them).
    """

    def __init__(
        self, name: str, alertname_regex: str, labels: Sequence[str], matchers: str = ""
    ) -> None:
        self._name = name
        self._selector = f'alertname=~"{alertname_regex}", alertstate="firing"' + (
            f", {matchers}" if matchers else ""
        )
        self._labels = labels

    def build(self) -> AnnotationQuery:
        """Return the annotation query."""
        return PrometheusAnnotation(
            name=self._name,
            expr=f"ALERTS{{{self._selector}}}",
            title_format="{{alertname}}",
            text_format=", ".join(f"{label} {{{{{label}}}}}" for label in self._labels),
            tag_keys=",".join(self._labels),
        )


def _dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .timezone("utc")
        .time("now-1h", "now")
        .refresh("10s")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("tradingbot")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(False)
        )
    )


def _numbered(built: DashboardModel) -> DashboardModel:
    """Give each panel and row a distinct id, 1, 2, ... in order (the SDK leaves them unset)."""
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


def agent_health() -> DashboardModel:
    """Return the agent-health dashboard: the collapse metrics of each agent and its alerts."""
    ln_bins = math.log(ENTROPY_BINS)
    agent_variable = (
        dashboard.QueryVariable("agent")
        .label("agent")
        .description("The symbols whose agents to show")
        .datasource(datasource())
        .query("label_values(tradingbot_agent_window_actions, agent)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(VARIABLE_VALUES["agent"])
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )
    builder = (
        _dashboard(
            "tradingbot-agent-health",
            "tradingbot / agent health",
            "Action collapse of each symbol agent over its last 1,000 actions "
            "(collapse-detector), with the plan's thresholds and the open alerts.",
        )
        .with_variable(agent_variable)
        .annotation(
            AlertAnnotation(
                "Collapse alerts",
                COLLAPSE_ALERTS,
                ["agent", "metric", "severity"],
                matchers=AGENT,
            )
        )
        .with_row(dashboard.Row("Collapse alerts"))
        .with_panel(
            _stat(
                "Open collapse alerts",
                "Alerts the collapse detector holds open now, over the selected agents.",
                Query(f"count(tradingbot_agent_collapse_open{{{AGENT}}} == 1) or vector(0)"),
                unit="short",
                thresholds=_thresholds(GREEN, (1, RED)),
                height=8,
            )
        )
        .with_panel(
            table.Panel()
            .title("Open collapse alerts by agent")
            .description("One row per open alert: the agent, the metric that crossed, severity.")
            .datasource(datasource())
            .targets(
                _targets(
                    [
                        Query(
                            "sum by (agent, metric, severity) "
                            f"(tradingbot_agent_collapse_open{{{AGENT}}}) == 1"
                        )
                    ],
                    table_format=True,
                )
            )
            .with_transformation(
                DataTransformerConfig(
                    id_val="organize",
                    options={"excludeByName": {"Time": True, "Value": True}},
                )
            )
            .show_header(True)
            .span(18)
            .height(8)
        )
        .with_row(dashboard.Row("Action distribution"))
        .with_panel(
            _timeseries(
                "Action diversity",
                "Entropy of the raw actions / ln(20): 0 collapsed, 1 uniform. "
                f"Warning below {DIVERSITY_WARNING}, critical below {DIVERSITY_CRITICAL}.",
                [Query(f"tradingbot_agent_action_diversity_ratio{{{AGENT}}}", "{{agent}}")],
                tooltip=TooltipDisplayMode.SINGLE,
                unit="percentunit",
                thresholds=_thresholds(
                    RED, (DIVERSITY_CRITICAL, ORANGE), (DIVERSITY_WARNING, GREEN)
                ),
                min_value=0,
                max_value=1,
            )
        )
        .with_panel(
            _timeseries(
                "Action entropy (nats)",
                "Entropy of the histogram of raw actions (20 bins over [-1, 1]); "
                "the lines are the diversity thresholds times ln(20).",
                [Query(f"tradingbot_agent_action_entropy_nats{{{AGENT}}}", "{{agent}}")],
                tooltip=TooltipDisplayMode.SINGLE,
                unit="short",
                thresholds=_thresholds(
                    RED,
                    (round(DIVERSITY_CRITICAL * ln_bins, 3), ORANGE),
                    (round(DIVERSITY_WARNING * ln_bins, 3), GREEN),
                ),
                min_value=0,
            )
        )
        .with_panel(
            _timeseries(
                "Dominant bin share",
                f"Share of the window in the most frequent action bin; above {DOMINANCE_MAX} "
                "the agent is close to one action.",
                [Query(f"tradingbot_agent_dominant_bin_ratio{{{AGENT}}}", "{{agent}}")],
                tooltip=TooltipDisplayMode.SINGLE,
                unit="percentunit",
                thresholds=_thresholds(GREEN, (DOMINANCE_MAX, RED)),
                min_value=0,
                max_value=1,
            )
        )
        .with_panel(
            _timeseries(
                "Dominant kind share",
                "Share of the most frequent kind (buy, sell, hold); dominance above "
                f"{DOMINANCE_MAX}.",
                [Query(f"tradingbot_agent_dominant_kind_ratio{{{AGENT}}}", "{{agent}}")],
                tooltip=TooltipDisplayMode.SINGLE,
                unit="percentunit",
                thresholds=_thresholds(GREEN, (DOMINANCE_MAX, RED)),
                min_value=0,
                max_value=1,
            )
        )
        .with_panel(
            _timeseries(
                "Kind shares",
                "Share of each kind (buy, sell, hold) in the window of each agent.",
                [Query(f"tradingbot_agent_kind_share_ratio{{{AGENT}}}", "{{agent}} {{kind}}")],
                tooltip=TooltipDisplayMode.SINGLE,
                unit="percentunit",
                min_value=0,
                max_value=1,
            )
        )
        .with_panel(
            _timeseries(
                "Saturation",
                "Share of actions at the bounds (|a| >= 0.99): a policy pinned to +-1.",
                [Query(f"tradingbot_agent_saturation_ratio{{{AGENT}}}", "{{agent}}")],
                tooltip=TooltipDisplayMode.SINGLE,
                unit="percentunit",
                min_value=0,
                max_value=1,
            )
        )
        .with_row(dashboard.Row("Behaviour"))
        .with_panel(
            _timeseries(
                "Longest repeat run",
                "Longest run of exactly identical actions in the window (red above the plan's "
                f"{REPEATS_MAX}), and of identical kinds (buy / sell / hold; holding is normal).",
                [
                    Query(f"tradingbot_agent_repeat_run_actions{{{AGENT}}}", "{{agent}} actions"),
                    Query(f"tradingbot_agent_kind_run_actions{{{AGENT}}}", "{{agent}} kinds"),
                ],
                tooltip=TooltipDisplayMode.SINGLE,
                unit="short",
                thresholds=_thresholds(GREEN, (REPEATS_MAX, RED)),
                min_value=0,
            )
        )
        .with_panel(
            _timeseries(
                "Trade frequency",
                "Share of the window's actions that led to a fill; alert below "
                f"{TRADE_FREQUENCY_MIN}.",
                [Query(f"tradingbot_agent_trade_frequency_ratio{{{AGENT}}}", "{{agent}}")],
                tooltip=TooltipDisplayMode.SINGLE,
                unit="percentunit",
                thresholds=_thresholds(RED, (TRADE_FREQUENCY_MIN, GREEN)),
                min_value=0,
                max_value=1,
            )
        )
        .with_panel(
            _timeseries(
                "Actions in the window",
                "Actions in each agent's count window (up to 1,000): the shares are noisy "
                "until it fills.",
                [Query(f"tradingbot_agent_window_actions{{{AGENT}}}", "{{agent}}")],
                tooltip=TooltipDisplayMode.SINGLE,
                unit="short",
                min_value=0,
                width=24,
            )
        )
    )
    return _numbered(builder.build())


def portfolio() -> DashboardModel:
    """Return the portfolio dashboard: equity, risk, P&L and the orders by gate."""
    builder = (
        _dashboard(
            "tradingbot-portfolio",
            "tradingbot / portfolio",
            "The portfolio manager's book at each mark: equity, risk, P&L, and the "
            "orders filled, skipped and clipped by gate.",
        )
        .annotation(AlertAnnotation("Portfolio alerts", PORTFOLIO_ALERTS, ["severity"]))
        .with_row(dashboard.Row("Now"))
        .with_panel(
            _stat(
                "Equity",
                "Equity at the last mark.",
                Query("tradingbot_portfolio_equity_dollars"),
                unit="currencyUSD",
                thresholds=_thresholds(GREEN),
            )
        )
        .with_panel(
            _stat(
                "Drawdown",
                f"Fall from the running peak of equity; red from {DRAWDOWN_MAX}.",
                Query("tradingbot_portfolio_drawdown_ratio"),
                unit="percentunit",
                thresholds=_thresholds(GREEN, (DRAWDOWN_MAX, RED)),
            )
        )
        .with_panel(
            _stat(
                "Rolling Sharpe",
                f"Annualised Sharpe of the last 20 step returns; red below {SHARPE_MIN}.",
                Query("tradingbot_portfolio_rolling_sharpe_ratio"),
                unit="short",
                thresholds=_thresholds(RED, (SHARPE_MIN, GREEN)),
            )
        )
        .with_panel(
            _stat(
                "Exposure",
                "Market value of the positions / equity.",
                Query("tradingbot_portfolio_exposure_ratio"),
                unit="percentunit",
                thresholds=_thresholds(GREEN),
            )
        )
        .with_row(dashboard.Row("Equity and P&L"))
        .with_panel(
            _timeseries(
                "Equity and cash",
                "Equity at each mark and the cash part of it.",
                [
                    Query("tradingbot_portfolio_equity_dollars", "equity"),
                    Query("tradingbot_portfolio_cash_dollars", "cash"),
                ],
                unit="currencyUSD",
            )
        )
        .with_panel(
            _timeseries(
                "Realized P&L",
                "Realised P&L of the run.",
                [Query("tradingbot_portfolio_realized_pnl_dollars", "realized")],
                unit="currencyUSD",
            )
        )
        .with_panel(
            _timeseries(
                "Unrealized P&L by symbol (top 20 by size)",
                "Unrealised P&L of the 20 held symbols with the largest gain or loss.",
                [
                    Query(
                        "tradingbot_portfolio_unrealized_pnl_dollars and "
                        "topk(20, abs(tradingbot_portfolio_unrealized_pnl_dollars))",
                        "{{symbol}}",
                    )
                ],
                unit="currencyUSD",
                width=24,
            )
        )
        .with_row(dashboard.Row("Risk"))
        .with_panel(
            _timeseries(
                "Drawdown",
                f"Fall from the running peak of equity; the line is {DRAWDOWN_MAX}.",
                [Query("tradingbot_portfolio_drawdown_ratio", "drawdown")],
                unit="percentunit",
                thresholds=_thresholds(GREEN, (DRAWDOWN_MAX, RED)),
                min_value=0,
            )
        )
        .with_panel(
            _timeseries(
                "Exposure",
                "Market value of the positions / equity.",
                [Query("tradingbot_portfolio_exposure_ratio", "exposure")],
                unit="percentunit",
                min_value=0,
            )
        )
        .with_panel(
            _timeseries(
                "Rolling Sharpe",
                f"Annualised Sharpe of the last 20 step returns; the line is {SHARPE_MIN}.",
                [Query("tradingbot_portfolio_rolling_sharpe_ratio", "sharpe")],
                unit="short",
                thresholds=_thresholds(RED, (SHARPE_MIN, GREEN)),
            )
        )
        .with_panel(
            _timeseries(
                "Win rate",
                "Winning closing trades / closing trades.",
                [Query("tradingbot_portfolio_win_rate_ratio", "win rate")],
                unit="percentunit",
                min_value=0,
                max_value=1,
            )
        )
        .with_row(dashboard.Row("Orders"))
        .with_panel(
            _timeseries(
                "Fills by side (/s)",
                "Orders filled per second, by side.",
                [
                    Query(
                        f"sum by (side) (rate(tradingbot_portfolio_orders_total[{RATE_WINDOW}]))",
                        "{{side}}",
                    )
                ],
                unit="short",
                min_value=0,
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Skips by gate (/s)",
                "Orders skipped per second, by the gate that skipped them.",
                [
                    Query(
                        f"sum by (reason) (rate(tradingbot_portfolio_skips_total[{RATE_WINDOW}]))",
                        "{{reason}}",
                    )
                ],
                unit="short",
                min_value=0,
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Clips by gate (/s)",
                "Orders clipped per second, by the gate that clipped them.",
                [
                    Query(
                        f"sum by (reason) (rate(tradingbot_portfolio_clips_total[{RATE_WINDOW}]))",
                        "{{reason}}",
                    )
                ],
                unit="short",
                min_value=0,
                width=8,
            )
        )
    )
    return _numbered(builder.build())


def _quantiles(histogram: str, quantiles: Sequence[float]) -> list[Query]:
    bucket = f"sum by (le) (rate({histogram}_bucket[{RATE_WINDOW}]))"
    return [Query(f"histogram_quantile({q}, {bucket})", f"p{round(q * 100):d}") for q in quantiles]


def pipeline() -> DashboardModel:
    """Return the pipeline dashboard: replay, inference, Kafka, detector and processes."""
    builder = (
        _dashboard(
            "tradingbot-pipeline",
            "tradingbot / pipeline",
            "Throughput and latency of the lockstep replay, the symbol agents' inference, "
            "Kafka lag and dead letters, the collapse detector and the processes.",
        )
        .annotation(
            AlertAnnotation(
                "Pipeline alerts", PIPELINE_ALERTS, ["service", "topic", "instance", "severity"]
            )
        )
        .with_row(dashboard.Row("Replay"))
        .with_panel(
            _stat(
                "Replay progress",
                "Completed steps / steps of the run.",
                Query("tradingbot_replay_progress_ratio"),
                unit="percentunit",
                thresholds=_thresholds(GREEN),
                height=8,
            )
        )
        .with_panel(
            _timeseries(
                "Replay throughput (/s)",
                "Lockstep steps completed and bars emitted per second.",
                [
                    Query(f"rate(tradingbot_replay_steps_total[{RATE_WINDOW}])", "steps/s"),
                    Query(f"rate(tradingbot_replay_bars_total[{RATE_WINDOW}])", "bars/s"),
                ],
                unit="short",
                min_value=0,
                width=9,
            )
        )
        .with_panel(
            _timeseries(
                "Step round trip",
                "Wall time of one lockstep round trip (bars out, every action back).",
                _quantiles("tradingbot_replay_step_seconds", [0.5, 0.95]),
                unit="s",
                min_value=0,
                width=9,
            )
        )
        .with_row(dashboard.Row("Paced runs: latency and deadlines"))
        .with_panel(
            _timeseries(
                "Bar to decision",
                "Wall time from a bar sent by the replay to its decision committed by the "
                "portfolio manager (p50, p99); a paced step's budget is the time to the next bar.",
                [
                    Query(
                        "histogram_quantile(0.5, sum by (le) (rate("
                        f'tradingbot_latency_seconds_bucket{{path="bar_to_decision"}}[{RATE_WINDOW}])))',
                        "p50",
                    ),
                    Query(
                        "histogram_quantile(0.99, sum by (le) (rate("
                        f'tradingbot_latency_seconds_bucket{{path="bar_to_decision"}}[{RATE_WINDOW}])))',
                        "p99",
                    ),
                ],
                unit="s",
                min_value=0,
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Bar to action, action to decision (p99)",
                "Where the time goes: the agents' share and the portfolio manager's.",
                [
                    Query(
                        "histogram_quantile(0.99, sum by (le, path) (rate("
                        'tradingbot_latency_seconds_bucket{path=~"bar_to_action|action_to_decision"}'
                        f"[{RATE_WINDOW}])))",
                        "{{path}}",
                    )
                ],
                unit="s",
                min_value=0,
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Missed decisions and late actions (/s)",
                "Symbols without an action by their deadline (they hold), actions that came "
                "after it, and how far the replay is behind its schedule.",
                [
                    Query(f"rate(tradingbot_decisions_missed_total[{RATE_WINDOW}])", "missed/s"),
                    Query(f"rate(tradingbot_actions_late_total[{RATE_WINDOW}])", "late/s"),
                    Query("tradingbot_replay_behind_schedule_seconds", "behind schedule (s)"),
                ],
                unit="short",
                min_value=0,
                width=8,
            )
        )
        .with_row(dashboard.Row("Inference"))
        .with_panel(
            _timeseries(
                "Inference latency",
                "Wall time of one batched policy call.",
                _quantiles("tradingbot_inference_latency_seconds", [0.5, 0.95, 0.99]),
                unit="s",
                min_value=0,
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Inference batch size",
                "Observations per policy call: the mean and the 95th percentile.",
                [
                    Query(
                        f"sum(rate(tradingbot_inference_batch_size_sum[{RATE_WINDOW}])) / "
                        f"sum(rate(tradingbot_inference_batch_size_count[{RATE_WINDOW}]))",
                        "mean",
                    ),
                    *_quantiles("tradingbot_inference_batch_size", [0.95]),
                ],
                unit="short",
                min_value=0,
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Actions by kind (/s)",
                "Actions the symbol agents emit per second, by kind.",
                [
                    Query(
                        f"sum by (kind) (rate(tradingbot_agent_actions_total[{RATE_WINDOW}]))",
                        "{{kind}}",
                    )
                ],
                unit="short",
                min_value=0,
                width=8,
            )
        )
        .with_row(dashboard.Row("Kafka"))
        .with_panel(
            _timeseries(
                "Consumer lag",
                "End offset minus position, summed over partitions, by service and topic; "
                f"the alert is above {CONSUMER_LAG_MAX}.",
                [
                    Query(
                        "sum by (service, topic) (tradingbot_kafka_consumer_lag_messages)",
                        "{{service}} {{topic}}",
                    )
                ],
                unit="short",
                thresholds=_thresholds(GREEN, (CONSUMER_LAG_MAX, RED)),
                min_value=0,
            )
        )
        .with_panel(
            _timeseries(
                f"Dead letters ({INCREASE_WINDOW})",
                f"Records sent to <topic>.dlq in the last {INCREASE_WINDOW}, by service and topic.",
                [
                    Query(
                        "sum by (service, topic) "
                        f"(increase(tradingbot_dlq_records_total[{INCREASE_WINDOW}]))",
                        "{{service}} {{topic}}",
                    )
                ],
                unit="short",
                thresholds=_thresholds(GREEN, (1, RED)),
                min_value=0,
            )
        )
        .with_row(dashboard.Row("Collapse detector"))
        .with_panel(
            _timeseries(
                "Detector throughput (/s)",
                "Actions the collapse detector processes per second.",
                [Query(f"rate(tradingbot_detector_actions_total[{RATE_WINDOW}])", "actions/s")],
                unit="short",
                min_value=0,
            )
        )
        .with_panel(
            _timeseries(
                "Detector event lag",
                "Wall time since the newest processed action was produced.",
                [Query("tradingbot_detector_event_lag_seconds", "lag")],
                unit="s",
                min_value=0,
            )
        )
        .with_row(dashboard.Row("Processes"))
        .with_panel(
            _timeseries(
                "Memory",
                "Resident memory of each process / the machine's memory, by service; the "
                f"alert is above {MEMORY_MAX}.",
                [
                    Query(
                        "max by (service, instance) (tradingbot_process_memory_ratio)",
                        "{{service}} {{instance}}",
                    )
                ],
                unit="percentunit",
                thresholds=_thresholds(GREEN, (MEMORY_MAX, RED)),
                min_value=0,
            )
        )
        .with_panel(
            _timeseries(
                "Scrape targets up",
                "1 while Prometheus scrapes the target, 0 when the scrape fails.",
                [Query("up", "{{job}} {{instance}}")],
                unit="short",
                thresholds=_thresholds(RED, (1, GREEN)),
                min_value=0,
                max_value=1,
            )
        )
    )
    return _numbered(builder.build())


DASHBOARDS = (agent_health, portfolio, pipeline, projection)
"""Every dashboard of the stack, in the order the README lists them."""


def render(built: DashboardModel) -> str:
    """Return the JSON of a dashboard: sorted keys, 2-space indent, a trailing newline."""
    return json.dumps(built, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def write_dashboards(out_dir: Path = OUTPUT_DIR) -> list[Path]:
    """Write every dashboard to `<out_dir>/<uid>.json` and return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for make in DASHBOARDS:
        built = make()
        path = out_dir / f"{built.uid}.json"
        path.write_text(render(built), encoding="utf-8")
        written.append(path)
    return written


def _panels(built: DashboardModel) -> Iterator[Panel]:
    for panel in built.panels or []:
        if isinstance(panel, RowPanel):
            yield from panel.panels
        else:
            yield panel


def panel_exprs(built: DashboardModel) -> list[str]:
    """Return the PromQL of every panel target of a dashboard, in panel order."""
    exprs = []
    for panel in _panels(built):
        for target in panel.targets or []:
            expr = getattr(target, "expr", None)
            if isinstance(expr, str):
                exprs.append(expr)
    return exprs


def substitute_variables(expr: str, values: dict[str, str] = VARIABLE_VALUES) -> str:
    """Replace `$name` and `${name}` in a query by the values Grafana would send.

    The defaults are the values for "All" (`agent=~"$agent"` becomes
    `agent=~".*"`); an unknown variable raises KeyError.
    """
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)


def all_exprs() -> list[tuple[str, str]]:
    """Return `(dashboard uid, PromQL)` for every panel query, variables substituted.

    Each variable takes the value Grafana sends when "All" is selected
    (VARIABLE_VALUES: `$agent` becomes `.*`), so the expression can be sent as is
    to Prometheus' query API. Annotation queries (the `ALERTS` series) are not
    included: they have data only while an alert fires. Of the panel queries,
    "Open collapse alerts by agent" (`... == 1`) is empty while no alert is open.
    """
    return [
        (str(built.uid), substitute_variables(expr))
        for built in (make() for make in DASHBOARDS)
        for expr in panel_exprs(built)
    ]


def main() -> None:
    """Write the dashboards into grafana/dashboards/."""
    for path in write_dashboards():
        print(path)


if __name__ == "__main__":
    main()
