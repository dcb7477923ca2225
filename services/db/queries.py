"""The questions users ask of the projection, as SQL (docs/queries.md shows and explains them).

``tradingbot db query NAME --run RUN`` runs them and the Grafana SQL panels
embed them (``grafana_sql``), so the command line, the dashboards and the
test that checks them against the ledger's own fold
(tests/integration/test_timescale_queries.py) read the same text. Each
works on every migration path: the daily relations are continuous
aggregates on TimescaleDB's community edition and materialized views
elsewhere, with the same names and columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True, slots=True)
class Query:
    """One named question: its SQL with ``%(param)s`` placeholders."""

    name: str
    title: str
    sql: str

    @property
    def params(self) -> tuple[str, ...]:
        """The placeholders the SQL needs, in order of first use."""
        return tuple(dict.fromkeys(re.findall(r"%\((\w+)\)s", self.sql)))


RUNS = Query(
    "runs",
    "Run browser: every run, its data, models, trades and result",
    """\
SELECT r.run_id,
       r.dataset,
       r.mode,
       cardinality(r.symbols) AS symbols,
       r.steps,
       r.started_at,
       r.closed_at,
       r.initial_cash,
       r.final_equity,
       r.final_equity / r.initial_cash - 1 AS total_return,
       (SELECT string_agg(m.policy || ' ' || m.policy_version, ', '
                          ORDER BY m.policy, m.policy_version)
          FROM run_models m WHERE m.run_id = r.run_id) AS models,
       (SELECT count(*) FROM fills f WHERE f.run_id = r.run_id) AS trades
FROM runs r
ORDER BY r.run_id DESC""",
)

EQUITY_CURVE = Query(
    "equity_curve",
    "Equity curve and drawdown of a run, one row per mark",
    """\
SELECT m.step,
       m.event_time AS time,
       m.equity,
       m.cash,
       greatest(r.initial_cash, max(m.equity) OVER w) AS peak,
       (greatest(r.initial_cash, max(m.equity) OVER w) - m.equity)
         / greatest(r.initial_cash, max(m.equity) OVER w) AS drawdown
FROM marks m
JOIN runs r USING (run_id)
WHERE m.run_id = %(run_id)s
WINDOW w AS (ORDER BY m.step ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
ORDER BY m.step""",
)

PNL_BY_SYMBOL = Query(
    "pnl_by_symbol",
    "P&L and trade count by symbol and agent (realised, unrealised at the last mark, total)",
    """\
WITH last_mark AS (
    SELECT event_id FROM marks
    WHERE run_id = %(run_id)s
    ORDER BY step DESC
    LIMIT 1
), flows AS (
    SELECT agent,
           symbol,
           count(*) AS trades,
           count(*) FILTER (WHERE side = 'buy') AS buys,
           count(*) FILTER (WHERE side = 'sell') AS sells,
           sum(fee) AS fees,
           sum(CASE WHEN side = 'sell' THEN notional - fee ELSE -(notional + fee) END) AS cash_flow
    FROM fills
    WHERE run_id = %(run_id)s
    GROUP BY agent, symbol
), held AS (
    SELECT h.agent, h.symbol, h.quantity, h.cost, h.market_value, h.unrealized_pnl
    FROM holdings h
    JOIN last_mark l ON h.mark_id = l.event_id
    WHERE h.run_id = %(run_id)s
)
SELECT f.agent,
       f.symbol,
       f.trades,
       f.buys,
       f.sells,
       f.fees,
       f.cash_flow + coalesce(h.cost, 0) AS realized_pnl,
       coalesce(h.unrealized_pnl, 0) AS unrealized_pnl,
       f.cash_flow + coalesce(h.market_value, 0) AS total_pnl,
       coalesce(h.quantity, 0) AS quantity
FROM flows f
LEFT JOIN held h USING (agent, symbol)
ORDER BY total_pnl DESC, f.symbol""",
)

ACTION_MIX = Query(
    "action_mix",
    "Action distribution per agent per day (buy / sell / hold decisions, mean actions)",
    """\
SELECT day,
       agent,
       actions,
       buy_actions,
       sell_actions,
       hold_actions,
       mean_raw,
       mean_smoothed
FROM agent_daily
WHERE run_id = %(run_id)s AND actions > 0
ORDER BY agent, day""",
)

ACTION_HISTOGRAM = Query(
    "action_histogram",
    "Histogram of the raw actions per agent per day (10 bins over [-1, 1])",
    """\
SELECT date_trunc('day', event_time, 'UTC') AS day,
       agent,
       -1 + 0.2 * (least(width_bucket(action_raw, -1, 1, 10), 10) - 1) AS bin_low,
       count(*) AS actions
FROM actions
WHERE run_id = %(run_id)s
GROUP BY 1, 2, 3
ORDER BY agent, day, bin_low""",
)

DAILY_PNL = Query(
    "daily_pnl",
    "P&L per agent per day (change in market value plus the day's cash flows)",
    """\
SELECT day, agent, pnl, trades, fees, quantity, market_value
FROM agent_daily
WHERE run_id = %(run_id)s
ORDER BY agent, day""",
)

ALERTS = Query(
    "alerts",
    "Collapse alerts per agent, when they cleared and how long they stayed open (in event time)",
    """\
SELECT a.agent,
       a.metric,
       a.severity,
       a.value,
       a.threshold,
       a.event_time AS opened_at,
       r.event_time AS resolved_at,
       r.event_time - a.event_time AS duration
FROM collapse_alerts a
LEFT JOIN LATERAL (
    SELECT x.event_time
    FROM collapse_alerts x
    WHERE x.run_id = a.run_id AND x.agent = a.agent AND x.metric = a.metric
      AND x.state = 'resolved' AND x.event_time > a.event_time
    ORDER BY x.event_time
    LIMIT 1
) r ON true
WHERE a.run_id = %(run_id)s AND a.state = 'detected'
ORDER BY a.agent, a.event_time, a.metric, a.severity""",
)

WORST_DAYS = Query(
    "worst_days",
    "The worst days of a run: the lowest returns of the equity curve",
    """\
SELECT m.step,
       m.event_time AS day,
       m.equity,
       m.equity / coalesce(lag(m.equity) OVER w, r.initial_cash) - 1 AS day_return
FROM marks m
JOIN runs r USING (run_id)
WHERE m.run_id = %(run_id)s
WINDOW w AS (ORDER BY m.step)
ORDER BY day_return, m.step
LIMIT %(limit)s""",
)

QUERIES: dict[str, Query] = {
    q.name: q
    for q in (
        RUNS,
        EQUITY_CURVE,
        PNL_BY_SYMBOL,
        ACTION_MIX,
        ACTION_HISTOGRAM,
        DAILY_PNL,
        ALERTS,
        WORST_DAYS,
    )
}
"""Every query, by name."""
DEFAULTS: dict[str, object] = {"limit": 10}
"""Values of the parameters a caller may leave out."""


def run(
    conn: psycopg.Connection, query: Query, **params: object
) -> tuple[list[str], list[tuple[object, ...]]]:
    """Run ``query``; return its column names and rows."""
    values = {**DEFAULTS, **params}
    missing = [p for p in query.params if p not in values]
    if missing:
        raise ValueError(f"query {query.name} needs {', '.join(missing)}")
    with conn.cursor() as cursor:
        cursor.execute(query.sql.encode(), {p: values[p] for p in query.params})
        columns = [c.name for c in cursor.description or ()]
        return columns, list(cursor.fetchall())


def grafana_sql(query: Query, variables: dict[str, str] | None = None) -> str:
    """The query for a Grafana SQL panel: parameters become dashboard variables."""
    names = {"run_id": "'${run_id}'", "limit": "${limit:raw}"} | (variables or {})
    return re.sub(r"%\((\w+)\)s", lambda m: names[m[1]], query.sql)
