"""Writes of the projection: COPY into staging tables, then upserts by event id.

A batch is one transaction: each table's rows are copied (binary COPY) into
a temporary staging table of the session and inserted from there with
``ON CONFLICT DO NOTHING`` on the event's key, so a redelivered event writes
nothing. ``runs`` and ``run_models`` take merging upserts that skip rows
whose values would not change, and ``rl_trades`` is joined from the fills
and the decisions that caused them. psycopg's errors are translated here:
``TransientDatabaseError`` (retry later), ``RowRejected`` (a record the
database refuses), ``DatabaseError`` (anything else).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from services.db import migrations
from services.db.config import DatabaseConfig
from services.db.errors import DatabaseError, RowRejected, SchemaOutdated, describe, is_transient
from services.db.rows import DERIVED, RUN_COLUMNS, TABLES, Batch, Table

AsyncConn = psycopg.AsyncConnection[tuple[object, ...]]


class TransientDatabaseError(DatabaseError):
    """The database went away or asked to retry; the same write may succeed later."""


def translate(error: psycopg.Error) -> DatabaseError:
    """The projection's error for a psycopg error."""
    text = describe(error)
    if is_transient(error):
        return TransientDatabaseError(text)
    if isinstance(error, psycopg.IntegrityError | psycopg.DataError):
        return RowRejected(text)
    return DatabaseError(text)


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _columns(table: Table) -> sql.Composed:
    return sql.SQL(", ").join(_ident(c) for c in table.columns)


def _stage(table: Table) -> sql.Identifier:
    return _ident(f"stage_{table.name}")


_RL_TRADES = sql.SQL(
    """
    INSERT INTO rl_trades (trade_id, decision_id, run_id, agent, symbol, event_time, policy,
                           model_version, action_raw, action_smoothed, trade_value, action_type,
                           quantity, price, fee)
    SELECT f.event_id, f.cause_id, f.run_id, f.agent, f.symbol, f.event_time, d.policy,
           d.policy_version, d.action_raw, d.action_smoothed, round(f.notional::numeric, 2),
           f.side, f.quantity, f.price, f.fee
    FROM stage_fills f JOIN decisions d ON d.event_id = f.cause_id
    ON CONFLICT DO NOTHING
    """
)
_RUN_MODELS = sql.SQL(
    """
    INSERT INTO run_models (run_id, policy, policy_version, first_seen, last_seen)
    SELECT run_id, policy, policy_version, min(event_time), max(event_time)
    FROM stage_actions GROUP BY 1, 2, 3
    ON CONFLICT (run_id, policy, policy_version) DO UPDATE
    SET first_seen = least(run_models.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(run_models.last_seen, EXCLUDED.last_seen)
    WHERE EXCLUDED.first_seen < run_models.first_seen
       OR EXCLUDED.last_seen > run_models.last_seen
    """
)


def _runs_upsert() -> sql.Composed:
    cols = [_ident(c) for c in RUN_COLUMNS]
    merged = [sql.SQL("coalesce(EXCLUDED.{c}, runs.{c})").format(c=c) for c in cols]
    return sql.SQL(
        "INSERT INTO runs (run_id, {cols}) VALUES (%s, {params}) "
        "ON CONFLICT (run_id) DO UPDATE SET {sets} "
        "WHERE ({old}) IS DISTINCT FROM ({new})"
    ).format(
        cols=sql.SQL(", ").join(cols),
        params=sql.SQL(", ").join(sql.Placeholder() for _ in cols),
        sets=sql.SQL(", ").join(
            sql.SQL("{} = {}").format(c, m) for c, m in zip(cols, merged, strict=True)
        ),
        old=sql.SQL(", ").join(sql.SQL("runs.{}").format(c) for c in cols),
        new=sql.SQL(", ").join(merged),
    )


_RUNS = _runs_upsert()
RUN_TABLES: tuple[str, ...] = tuple(t.name for t in TABLES) + DERIVED
"""Every table that holds rows of a run (what a rebuild deletes)."""
ROLLUPS = ("agent_daily_actions", "agent_daily_trades", "agent_daily_positions")
"""The daily rollups: continuous aggregates (community) or materialized views."""


async def _configure(conn: AsyncConn) -> None:
    """Session set-up of a pooled connection: UTC and this session's staging tables."""
    await conn.execute("SET timezone TO 'UTC'")
    for table in TABLES:
        await conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS)").format(
                _stage(table), _ident(table.name)
            )
        )
    await conn.commit()


class ProjectionStore:
    """The projection's database behind a psycopg pool: batch writes, run deletes, refreshes."""

    def __init__(self, config: DatabaseConfig, pool: AsyncConnectionPool[AsyncConn], path: str):
        self.config = config
        self.pool = pool
        self.path = path
        """The migration path the database took (``migrations.PATHS``)."""

    @classmethod
    async def open(cls, config: DatabaseConfig) -> ProjectionStore:
        """Open the pool on a database whose schema is this build's (``SchemaOutdated`` else)."""
        try:
            async with await psycopg.AsyncConnection.connect(
                config.url, autocommit=True, connect_timeout=max(1, int(config.connect_timeout_s))
            ) as conn:
                path, _ = await _verify(conn)
        except psycopg.Error as e:
            raise translate(e) from e
        pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
            config.url,
            min_size=config.pool_min,
            max_size=max(config.pool_min, config.pool_max),
            open=False,
            configure=_configure,
            check=AsyncConnectionPool.check_connection,
            kwargs={"connect_timeout": max(1, int(config.connect_timeout_s))},
            timeout=config.connect_timeout_s * 2,
            name="tradingbot-projection",
        )
        await pool.open()
        return cls(config, pool, path)

    async def close(self) -> None:
        """Close every connection of the pool."""
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConn]:
        """One connection in one transaction (committed on exit, rolled back on an error)."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.Error as e:
            raise translate(e) from e

    async def write(self, batch: Batch) -> dict[str, int]:
        """Write a batch in one transaction; return the rows that were new, by table."""
        async with self.transaction() as conn:
            return await self.write_in(conn, batch)

    async def write_in(self, conn: AsyncConn, batch: Batch) -> dict[str, int]:
        """Write a batch inside the caller's transaction; return the new rows by table."""
        new: dict[str, int] = {}
        staged: list[Table] = []
        try:
            for table in TABLES:
                rows = batch.rows[table.name]
                if not rows:
                    continue
                staged.append(table)
                async with conn.cursor().copy(
                    sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                        _stage(table), _columns(table)
                    )
                ) as copy:
                    copy.set_types(list(table.types))
                    for row in rows:
                        await copy.write_row(row)
                cursor = await conn.execute(
                    sql.SQL(
                        "INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT DO NOTHING"
                    ).format(t=_ident(table.name), c=_columns(table), s=_stage(table))
                )
                new[table.name] = cursor.rowcount
            if batch.rows["actions"]:
                new["run_models"] = (await conn.execute(_RUN_MODELS)).rowcount
            if batch.rows["fills"]:
                new["rl_trades"] = (await conn.execute(_RL_TRADES)).rowcount
            if batch.runs:
                async with conn.cursor() as cursor:
                    await cursor.executemany(
                        _RUNS,
                        [
                            (run_id, *(patch.get(c) for c in RUN_COLUMNS))
                            for run_id, patch in batch.runs.items()
                        ],
                    )
                    new["runs"] = max(cursor.rowcount, 0)
            if staged:
                await conn.execute(
                    sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(_stage(t) for t in staged))
                )
        except psycopg.Error as e:
            raise translate(e) from e
        return new

    async def delete_run(self, conn: AsyncConn, run_id: str) -> dict[str, int]:
        """Delete every row of ``run_id`` inside the caller's transaction; the counts by table."""
        deleted: dict[str, int] = {}
        try:
            for name in RUN_TABLES:
                cursor = await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE run_id = %s").format(_ident(name)), (run_id,)
                )
                deleted[name] = cursor.rowcount
        except psycopg.Error as e:
            raise translate(e) from e
        return deleted

    async def refresh(self) -> None:
        """Bring the daily rollups up to date with the tables."""
        try:
            async with self.pool.connection() as conn:
                await conn.set_autocommit(True)
                try:
                    for name in ROLLUPS:
                        if self.path == "timescaledb-community":
                            await conn.execute(
                                "CALL refresh_continuous_aggregate(%s, NULL, NULL)", (name,)
                            )
                        else:
                            await conn.execute(
                                sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(
                                    _ident(name)
                                )
                            )
                finally:
                    await conn.set_autocommit(False)
        except psycopg.Error as e:
            raise translate(e) from e


async def _verify(conn: AsyncConn) -> tuple[str, int]:
    cursor = await conn.execute(
        "SELECT version, path FROM schema_migrations ORDER BY version DESC LIMIT 1"
        if await _has_migrations(conn)
        else "SELECT 0, NULL"
    )
    row = await cursor.fetchone()
    version, path = (int(str(row[0])), row[1]) if row else (0, None)
    if version != migrations.LATEST or path is None:
        raise SchemaOutdated(
            f"the database's schema is v{version}, this build writes v{migrations.LATEST}: "
            "run `tradingbot db migrate`"
        )
    return str(path), version


async def _has_migrations(conn: AsyncConn) -> bool:
    cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cursor.fetchone()
    return bool(row and row[0])
