"""Migrations on a real TimescaleDB: from empty, again, on each path, and what they refuse."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest
from conftest import TimescaleServer

from services.cli import main
from services.db import migrations
from services.db.config import DatabaseConfig
from services.db.errors import MigrationError, SchemaOutdated
from services.db.store import ProjectionStore

pytestmark = pytest.mark.integration

TABLES = {
    "runs", "run_models", "bars", "actions", "decisions", "fills", "skips", "marks", "holdings",
    "collapse_alerts", "rl_trades", "schema_migrations",
}  # fmt: skip
HYPERTABLES = {"bars", "actions", "decisions", "fills", "marks", "holdings"}
ROLLUPS = {"agent_daily_actions", "agent_daily_trades", "agent_daily_positions"}


@dataclass(frozen=True)
class Catalog:
    """What a schema consists of."""

    tables: set[str]
    views: set[str]
    matviews: set[str]
    indexes: set[str]
    hypertables: set[str]
    applied: list[tuple[object, ...]]
    """(version, file, path, checksum, applied_at) of each migration."""


def names(conn: psycopg.Connection, query: str) -> set[str]:
    return {str(row[0]) for row in conn.execute(query.encode())}


def catalog(url: str) -> Catalog:
    """The tables, views, hypertables and indexes of ``url``, and its migrations."""
    with psycopg.connect(url) as conn:
        has_ts = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb')"
        ).fetchone()
        return Catalog(
            tables=names(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"),
            views=names(conn, "SELECT viewname FROM pg_views WHERE schemaname = 'public'"),
            matviews=names(conn, "SELECT matviewname FROM pg_matviews"),
            indexes=names(conn, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"),
            hypertables=names(
                conn, "SELECT hypertable_name FROM timescaledb_information.hypertables"
            )
            if has_ts and has_ts[0]
            else set(),
            applied=[
                tuple(row)
                for row in conn.execute(
                    "SELECT version, file, path, checksum, applied_at"
                    " FROM schema_migrations ORDER BY version"
                )
            ],
        )


def test_migrate_from_empty_builds_hypertables_and_records_the_apache_path(
    timescaledb: TimescaleServer,
) -> None:
    url = timescaledb.create_database("schema_empty")

    report = migrations.migrate(url)

    assert report.path == "timescaledb-apache" and report.license == "apache"
    assert [m.version for m in report.applied] == list(range(1, migrations.LATEST + 1))
    found = catalog(url)
    assert TABLES <= found.tables
    assert found.hypertables == HYPERTABLES
    assert found.matviews == ROLLUPS
    assert {"agent_daily", "clips"} <= found.views
    assert "idx_action_continuous" in found.indexes
    assert {row[2] for row in found.applied} == {"timescaledb-apache"}


def test_migrating_again_applies_nothing_and_changes_nothing(timescaledb: TimescaleServer) -> None:
    url = timescaledb.create_database("schema_again")
    migrations.migrate(url)
    before = catalog(url)

    report = migrations.migrate(url)

    assert report.applied == ()
    assert catalog(url) == before


def test_plain_postgresql_path_has_the_same_relations_without_hypertables(
    timescaledb: TimescaleServer,
) -> None:
    url = timescaledb.create_database("schema_plain")

    report = migrations.migrate(url, timescaledb=False)

    assert report.path == "postgresql" and report.license is None
    found = catalog(url)
    assert TABLES <= found.tables
    assert found.hypertables == set()
    assert found.matviews == ROLLUPS
    assert found.applied[1][1] == "0002_hypertables.postgresql.sql"


def test_a_migration_changed_after_it_was_applied_is_refused(timescaledb: TimescaleServer) -> None:
    url = timescaledb.create_database("schema_edited")
    migrations.migrate(url)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")

    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrations.migrate(url)


def test_a_database_newer_than_this_build_is_refused(timescaledb: TimescaleServer) -> None:
    url = timescaledb.create_database("schema_newer")
    migrations.migrate(url)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, file, path, checksum)"
            " VALUES (%s, 'future', 'future.sql', 'timescaledb-apache', '')",
            (migrations.LATEST + 1,),
        )

    with pytest.raises(MigrationError, match="newer than this build"):
        migrations.migrate(url)
    with pytest.raises(SchemaOutdated):
        asyncio.run(ProjectionStore.open(DatabaseConfig(url=url)))


def test_the_store_refuses_a_database_without_the_schema(timescaledb: TimescaleServer) -> None:
    url = timescaledb.create_database("schema_missing")

    with pytest.raises(SchemaOutdated, match="tradingbot db migrate"):
        asyncio.run(ProjectionStore.open(DatabaseConfig(url=url)))


def test_db_migrate_command_says_which_path_it_took(
    timescaledb: TimescaleServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = timescaledb.create_database("schema_cli")

    assert main(["db", "migrate", "--url", url]) == 0
    first = capsys.readouterr().out
    assert main(["db", "migrate", "--url", url]) == 0
    again = capsys.readouterr().out

    assert "timescaledb-apache path" in first and "0004_agent_daily.sql" in first
    assert "no continuous aggregates" in first
    assert "nothing (it was up to date)" in again


def test_db_commands_refuse_an_unreachable_database_in_one_line(
    port_finder: Callable[[int], list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    port = port_finder(1)[0]
    url = f"postgresql://tradingbot:tradingbot@127.0.0.1:{port}/tradingbot"

    code = main(["db", "migrate", "--url", url])

    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "cannot reach the database" in err and "timescaledb.sh start" in err
    assert ":tradingbot@" not in err  # the password is not printed
