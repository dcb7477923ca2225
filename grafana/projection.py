"""The SQL dashboard of the TimescaleDB projection, generated as code (with grafana/dashboards.py).

Every panel runs one query of ``services.db.queries`` (docs/queries.md) as
Grafana SQL through the PostgreSQL datasource of uid ``timescaledb``
(grafana/provisioning/datasources/timescaledb.yml), with the run and agent
chosen by dashboard variables. The SDK has no builder for SQL targets, so
``SqlQuery`` writes the PostgreSQL datasource's fields itself.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, dashboard, table, timeseries
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.common import (
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
    TooltipDisplayMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)

from services.db import queries

DATASOURCE_UID = "timescaledb"
"""Uid of the PostgreSQL datasource of the projection."""
DATASOURCE_TYPE = "postgres"
"""Grafana 10.1's id of its PostgreSQL datasource (the compose file's Grafana)."""
UID = "tradingbot-projection"
TAG = "tradingbot"
VARIABLES = {"run_id": "'${run_id}'", "limit": "10"}
"""What each query parameter becomes in a panel: the chosen run, the ten worst days."""


def datasource() -> DataSourceRef:
    """Return a reference to the projection's PostgreSQL datasource, by uid."""
    return DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class SqlTarget(Dataquery):
    """A Grafana SQL target: raw SQL in code mode, returned as a table or as time series."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: str) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt

    def to_json(self) -> dict[str, object]:
        """Return the target's JSON as the PostgreSQL datasource reads it."""
        return {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "editorMode": "code",
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "format": self.format,
        }


class SqlQuery(Builder[Dataquery]):
    """Build a SQL target from a query of ``services.db.queries`` (or from SQL around one)."""

    def __init__(self, sql: str, fmt: str = "table", ref_id: str = "A") -> None:
        self._target = SqlTarget(ref_id, sql, fmt)

    def build(self) -> Dataquery:
        """Return the target."""
        return self._target


def panel_sql(name: str) -> str:
    """The SQL of query ``name`` with the dashboard's variables in place of its parameters."""
    return queries.grafana_sql(queries.QUERIES[name], VARIABLES)


def _per_agent(name: str, select: str) -> str:
    """``select`` over query ``name`` restricted to the chosen agent, as time series."""
    inner = panel_sql(name)
    return f"SELECT {select}\nFROM (\n{inner}\n) q\nWHERE agent = '${{agent}}'\nORDER BY 1"


def _table(title: str, description: str, sql: str, width: int = 24) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .with_target(SqlQuery(sql))
        .span(width)
        .height(9)
    )


def _bars_over_time(title: str, description: str, sql: str, unit: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .with_target(SqlQuery(sql, "time_series"))
        .unit(unit)
        .span(12)
        .height(9)
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builder.StackingConfig().mode(StackingMode.NORMAL))
        .legend(
            common_builder.VizLegendOptions()
            .show_legend(True)
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
        )
        .tooltip(common_builder.VizTooltipOptions().mode(TooltipDisplayMode.MULTI))
    )


def projection() -> DashboardModel:
    """Return the projection dashboard: runs, equity, P&L by symbol, actions, alerts."""
    run = (
        dashboard.QueryVariable("run_id")
        .label("run")
        .description("The run to show (newest first)")
        .datasource(datasource())
        .query("SELECT run_id FROM runs ORDER BY run_id DESC")
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
    )
    agent = (
        dashboard.QueryVariable("agent")
        .label("agent")
        .description("The agent (one per symbol) of the per-agent panels")
        .datasource(datasource())
        .query("SELECT DISTINCT agent FROM decisions WHERE run_id = '${run_id}' ORDER BY 1")
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    builder = (
        dashboard.Dashboard("tradingbot / projection (TimescaleDB)")
        .uid(UID)
        .description(
            "The TimescaleDB projection of the log: every run, its equity curve, P&L by "
            "symbol, each agent's actions per day and the collapse alerts (docs/queries.md)."
        )
        .tags([TAG])
        .editable()
        .timezone("utc")
        .time("now-20y", "now")  # event times are the replayed history's dates
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("tradingbot")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(False)
        )
        .with_variable(run)
        .with_variable(agent)
        .with_row(dashboard.Row("Runs"))
        .with_panel(
            _table(
                "Run browser",
                "Every run in the database: data source, models served, trades, result.",
                panel_sql("runs"),
            )
        )
        .with_row(dashboard.Row("The run"))
        .with_panel(
            timeseries.Panel()
            .title("Equity and drawdown")
            .description("Equity at each mark of the run and its fall from the running peak.")
            .datasource(datasource())
            .with_target(
                SqlQuery(
                    "SELECT time, equity, drawdown FROM (\n"
                    + panel_sql("equity_curve")
                    + "\n) q ORDER BY time",
                    "time_series",
                )
            )
            .unit("currencyUSD")
            .span(12)
            .height(9)
            .line_width(1)
        )
        .with_panel(
            _table(
                "Worst days",
                "The ten lowest daily returns of the equity curve.",
                panel_sql("worst_days"),
                width=12,
            )
        )
        .with_panel(
            barchart.Panel()
            .title("P&L by symbol")
            .description(
                "Realised plus unrealised P&L of each symbol's agent at the run's last mark."
            )
            .datasource(datasource())
            .with_target(
                SqlQuery(
                    "SELECT symbol, realized_pnl, unrealized_pnl FROM (\n"
                    + panel_sql("pnl_by_symbol")
                    + "\n) q ORDER BY total_pnl DESC"
                )
            )
            .x_field("symbol")
            .stacking(StackingMode.NORMAL)
            .show_value(VisibilityMode.NEVER)
            .unit("currencyUSD")
            .span(24)
            .height(9)
        )
        .with_panel(
            _table(
                "P&L and trades by symbol",
                "Trades, fees and realised, unrealised and total P&L of each symbol's agent.",
                panel_sql("pnl_by_symbol"),
            )
        )
        .with_row(dashboard.Row("The agent ($agent)"))
        .with_panel(
            _bars_over_time(
                "Action histogram per day",
                "The agent's raw actions of each day in ten bins over [-1, 1] (bin low edge).",
                _per_agent(
                    "action_histogram",
                    "day AS time, to_char(bin_low, 'FM0.0') AS metric, actions AS value",
                ),
                "short",
            )
        )
        .with_panel(
            _bars_over_time(
                "Action mix per day",
                "The agent's decisions of each day: buy, sell and hold.",
                _per_agent(
                    "action_mix",
                    "day AS time, buy_actions AS buy, sell_actions AS sell, hold_actions AS hold",
                ),
                "short",
            )
        )
        .with_panel(
            _bars_over_time(
                "Daily P&L",
                "The agent's P&L of each day: change in market value plus the day's cash flows.",
                _per_agent("daily_pnl", "day AS time, pnl"),
                "currencyUSD",
            )
        )
        .with_row(dashboard.Row("Alerts"))
        .with_panel(
            _table(
                "Collapse alert timeline",
                "Each collapse alert of the run: when it opened and cleared (event time), "
                "how long it stayed open, its value against the threshold.",
                panel_sql("alerts"),
            )
        )
    )
    built = builder.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built
