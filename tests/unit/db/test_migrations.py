"""The migration files: versions in order, one file per path and version, the plan of each path."""

from __future__ import annotations

from services.db import migrations


def test_versions_run_from_one_without_gaps() -> None:
    assert sorted(migrations.MIGRATIONS) == list(range(1, migrations.LATEST + 1))


def test_each_path_takes_its_variant_then_the_timescaledb_one_then_the_plain_one() -> None:
    files = {path: [m.file for m in migrations.plan(path)] for path in migrations.PATHS}

    assert files["timescaledb-community"] == [
        "0001_tables.sql", "0002_hypertables.timescaledb.sql",
        "0003_daily_rollups.community.sql", "0004_agent_daily.sql",
    ]  # fmt: skip
    assert files["timescaledb-apache"] == [
        "0001_tables.sql", "0002_hypertables.timescaledb.sql",
        "0003_daily_rollups.sql", "0004_agent_daily.sql",
    ]  # fmt: skip
    assert files["postgresql"] == [
        "0001_tables.sql", "0002_hypertables.postgresql.sql",
        "0003_daily_rollups.sql", "0004_agent_daily.sql",
    ]  # fmt: skip


def test_only_the_plain_postgresql_hypertable_step_is_empty() -> None:
    empty = {m.file for path in migrations.PATHS for m in migrations.plan(path) if m.empty}

    assert empty == {"0002_hypertables.postgresql.sql"}


def test_every_path_builds_the_same_daily_relations() -> None:
    for path in migrations.PATHS:
        text = "\n".join(m.sql for m in migrations.plan(path))
        for name in ("agent_daily_actions", "agent_daily_trades", "agent_daily_positions"):
            assert f"CREATE MATERIALIZED VIEW {name}" in text, (path, name)
        assert "CREATE VIEW agent_daily AS" in text


def test_the_plans_rl_trades_columns_are_there() -> None:
    tables = migrations.MIGRATIONS[1][""].sql

    for column in ("action_raw", "action_smoothed", "trade_value     decimal(15, 2)",
                   "action_type     varchar(20)"):  # fmt: skip
        assert column in tables
    assert "CREATE INDEX idx_action_continuous ON rl_trades (action_raw, action_smoothed)" in tables
