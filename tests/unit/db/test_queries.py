"""The queries: docs/queries.md shows each one as it is, and Grafana gets them with variables."""

from __future__ import annotations

from pathlib import Path

from services.db.queries import QUERIES, grafana_sql

DOC = (Path(__file__).resolve().parents[3] / "docs" / "queries.md").read_text()


def test_docs_show_every_query_exactly_as_it_runs() -> None:
    for query in QUERIES.values():
        assert f"### `{query.name}`: {query.title}\n\n```sql\n{query.sql}\n```" in DOC, query.name


def test_grafana_sql_puts_dashboard_variables_for_the_parameters() -> None:
    sql = grafana_sql(QUERIES["worst_days"])

    assert "%(" not in sql
    assert "m.run_id = '${run_id}'" in sql and "LIMIT ${limit:raw}" in sql


def test_every_query_but_the_run_browser_is_about_one_run() -> None:
    for name, query in QUERIES.items():
        assert ("run_id" in query.params) == (name != "runs"), name
