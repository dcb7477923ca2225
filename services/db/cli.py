"""``tradingbot db``: migrate, status, refresh, rebuild a run, run the queries (docs/queries.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal

from services import kafka
from services.db import migrations, queries
from services.db.config import DatabaseConfig
from services.db.errors import DatabaseError
from services.db.rebuild import rebuild
from services.db.store import ProjectionStore
from services.errors import Refusal


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``db`` command group to the ``tradingbot`` parser."""
    db = commands.add_parser(
        "db",
        help="the TimescaleDB projection: migrate, rebuild a run, query",
        description="The database projection of the log (docs/queries.md). The database is "
        "TRADINGBOT_DB_URL (default: the one deploy/local/timescaledb/timescaledb.sh starts).",
    )
    sub = db.add_subparsers(dest="db_command", required=True)
    migrate = sub.add_parser("migrate", help="apply the missing migrations; say which path")
    migrate.add_argument(
        "--plain", action="store_true", help="plain PostgreSQL tables even where TimescaleDB is"
    )
    sub.add_parser("status", help="the schema's version and path, and the rows per table")
    sub.add_parser("refresh", help="refresh the daily rollups now")
    again = sub.add_parser("rebuild", help="drop a run's rows and replay them from Kafka")
    again.add_argument("run_id")
    again.add_argument("--bootstrap", default="127.0.0.1:9092")
    again.add_argument(
        "--force", action="store_true", help="rebuild even if the log has fewer rows than the db"
    )
    query = sub.add_parser("query", help="run one of the queries of docs/queries.md")
    query.add_argument("name", choices=sorted(queries.QUERIES))
    query.add_argument("--run", dest="run_id", default=None, help="the run id (most queries)")
    query.add_argument("--limit", type=int, default=10, help="rows of worst_days")
    query.add_argument("--json", action="store_true", help="print JSON rows")
    query.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    for parser in (migrate, sub.choices["status"], sub.choices["refresh"], again, query):
        parser.add_argument("--url", default=None, help="database URL (TRADINGBOT_DB_URL)")


def run(args: argparse.Namespace) -> int:
    """Run a ``db`` command; return the exit code."""
    config = DatabaseConfig()
    if args.url:
        config = config.model_copy(update={"url": args.url})
    try:
        return _COMMANDS[args.db_command](args, config)
    except (DatabaseError, kafka.BrokerError, ValueError) as e:
        print(f"tradingbot db {args.db_command}: {e}", file=sys.stderr)
        return e.exit_code if isinstance(e, Refusal) else 1


def _migrate(args: argparse.Namespace, config: DatabaseConfig) -> int:
    report = migrations.migrate(
        config.url,
        timescaledb=config.timescaledb == "auto" and not args.plain,
        timeout_s=config.connect_timeout_s,
    )
    done = ", ".join(m.file for m in report.applied) or "nothing (it was up to date)"
    print(f"schema v{report.version} on the {report.path} path: applied {done}")
    print(_path_note(report.path, report.license))
    return 0


def _path_note(path: str, license_: str | None) -> str:
    if path == "timescaledb-community":
        return (
            "  TimescaleDB community edition: hypertables, continuous aggregates, "
            "compression and retention policies"
        )
    if path == "timescaledb-apache":
        return (
            f"  TimescaleDB {license_ or 'apache'} edition: hypertables; the daily rollups are "
            "materialized views the sink refreshes (no continuous aggregates, compression "
            "or retention on this license)"
        )
    return "  plain PostgreSQL: tables and materialized views the sink refreshes"


def _status(args: argparse.Namespace, config: DatabaseConfig) -> int:
    with migrations.connect(config.url, config.connect_timeout_s) as conn:
        done = migrations.applied(conn)
        if not done:
            print(
                f"no schema (this build writes v{migrations.LATEST}): run `tradingbot db migrate`"
            )
            return 1
        print(f"schema v{done[-1].version} of v{migrations.LATEST} on the {done[0].path} path")
        print(_path_note(done[0].path, migrations.timescaledb_license(conn)))
        for table in ("runs", "bars", "actions", "decisions", "fills", "skips", "marks",
                      "holdings", "collapse_alerts", "rl_trades"):  # fmt: skip
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            print(f"  {table:16} {row[0] if row else 0:>12,}")
    return 0


def _refresh(args: argparse.Namespace, config: DatabaseConfig) -> int:
    async def go() -> None:
        store = await ProjectionStore.open(config)
        try:
            await store.refresh()
        finally:
            await store.close()

    asyncio.run(go())
    print("refreshed the daily rollups")
    return 0


def _rebuild(args: argparse.Namespace, config: DatabaseConfig) -> int:
    async def go() -> None:
        store = await ProjectionStore.open(config)
        try:
            report = await rebuild(store, args.bootstrap, args.run_id, force=args.force)
        finally:
            await store.close()
        print(
            f"rebuilt run {report.run_id} from {report.events:,} events "
            f"(read {report.read_s:.1f}s, written {report.write_s:.1f}s)"
        )
        for table in sorted(report.deleted):
            print(
                f"  {table:16} {report.deleted[table]:>10,} deleted "
                f"{report.written.get(table, 0):>10,} written"
            )
        if report.refused:
            print(f"  {report.refused} record(s) refused by the database (see the .dlq topics)")

    asyncio.run(go())
    return 0


def _query(args: argparse.Namespace, config: DatabaseConfig) -> int:
    query = queries.QUERIES[args.name]
    if args.sql:
        print(query.sql)
        return 0
    if "run_id" in query.params and not args.run_id:
        raise ValueError(f"query {query.name} needs --run RUN_ID")
    with migrations.connect(config.url, config.connect_timeout_s) as conn:
        columns, rows = queries.run(conn, query, run_id=args.run_id, limit=args.limit)
    if args.json:
        print(json.dumps([dict(zip(columns, map(_plain, r), strict=True)) for r in rows], indent=2))
        return 0
    text = [[_text(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(t[i]) for t in text]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for t in text:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))
    print(f"({len(rows)} rows)")
    return 0


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if abs(value) < 1e-9:
            return "0"
        return f"{value:,.6g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


_COMMANDS = {
    "migrate": _migrate,
    "status": _status,
    "refresh": _refresh,
    "rebuild": _rebuild,
    "query": _query,
}
