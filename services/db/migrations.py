"""Versioned, forward-only, idempotent migrations of the projection's schema.

The SQL files of ``schema/`` are named ``NNNN_name[.variant].sql``. A
database takes one *path*, chosen at its first migration and recorded with
every migration applied:

- ``timescaledb-community`` (``timescaledb.license`` is ``timescale``):
  hypertables, continuous aggregates, compression and retention policies;
- ``timescaledb-apache`` (Debian's build): hypertables, and materialized
  views that the sink refreshes in place of continuous aggregates;
- ``postgresql`` (no extension, or ``TRADINGBOT_DB_TIMESCALEDB=off``): plain
  tables and the same materialized views.

For each version the file of the path's variant is taken (``.community`` /
``.apache`` / ``.postgresql``), else the TimescaleDB one (``.timescaledb``)
on either edition, else the plain one. Migrating again applies only what is
missing; a file changed after it was applied, or a database newer than this
build, is refused: add a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg

from services.db.errors import DatabaseUnavailable, MigrationError, SchemaOutdated, describe

Path = Literal["timescaledb-community", "timescaledb-apache", "postgresql"]
PATHS: tuple[Path, ...] = ("timescaledb-community", "timescaledb-apache", "postgresql")
VARIANTS: dict[Path, tuple[str, ...]] = {
    "timescaledb-community": ("community", "timescaledb", ""),
    "timescaledb-apache": ("apache", "timescaledb", ""),
    "postgresql": ("postgresql", ""),
}
"""The file variants each path takes, in order of preference."""
LOCK_KEY = 7_413_112_011
"""pg_advisory_lock key: one migration at a time per database."""
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.([a-z]+))?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file of one version."""

    version: int
    name: str
    variant: str
    file: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def empty(self) -> bool:
        """Whether the file has only comments (nothing to run on its path)."""
        return not any(
            line.strip() and not line.strip().startswith("--") for line in self.sql.splitlines()
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """A migration recorded in ``schema_migrations``."""

    version: int
    name: str
    file: str
    path: str
    checksum: str


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What ``migrate`` found and did."""

    path: Path
    applied: tuple[Migration, ...]
    version: int
    license: str | None
    """``timescaledb.license`` (``timescale`` or ``apache``); None without the extension."""


def load() -> dict[int, dict[str, Migration]]:
    """Every migration file of ``schema/``, by version and variant."""
    found: dict[int, dict[str, Migration]] = {}
    names: dict[int, str] = {}
    for entry in resources.files("services.db").joinpath("schema").iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        version, name, variant = int(match[1]), match[2], match[3] or ""
        if names.setdefault(version, name) != name:
            raise MigrationError(
                f"migrations {version:04d}_{names[version]} and {entry.name} share a version"
            )
        found.setdefault(version, {})[variant] = Migration(
            version, name, variant, entry.name, entry.read_text("utf-8")
        )
    expected = list(range(1, len(found) + 1))
    if sorted(found) != expected:
        raise MigrationError(f"migration versions {sorted(found)} are not 1..{len(found)}")
    return found


MIGRATIONS = load()
LATEST = max(MIGRATIONS)
"""The schema version this build writes."""


def choose(variants: dict[str, Migration], path: Path) -> Migration:
    """The file a database on ``path`` takes among one version's variants."""
    for variant in VARIANTS[path]:
        if variant in variants:
            return variants[variant]
    first = next(iter(variants.values()))
    raise MigrationError(f"migration {first.version:04d}_{first.name} has no file for {path}")


def plan(path: Path) -> list[Migration]:
    """The files a database on ``path`` takes, in order."""
    return [choose(MIGRATIONS[v], path) for v in sorted(MIGRATIONS)]


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    file        text NOT NULL,
    path        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def connect(url: str, timeout_s: float = 5.0) -> psycopg.Connection:
    """An autocommit connection, or ``DatabaseUnavailable`` saying where it looked."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout_s)))
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(
            f"cannot reach the database at {_redacted(url)}: {describe(e)} "
            "(start it: deploy/local/timescaledb/timescaledb.sh start; or set TRADINGBOT_DB_URL)"
        ) from e


def _redacted(url: str) -> str:
    return re.sub(r"://([^:@/]+):[^@/]*@", r"://\1:***@", url)


def migrate(url: str, *, timescaledb: bool = True, timeout_s: float = 5.0) -> MigrationReport:
    """Apply the missing migrations; return the path and what was applied."""
    with connect(url, timeout_s) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            return _migrate(conn, timescaledb)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _migrate(conn: psycopg.Connection, timescaledb: bool) -> MigrationReport:
    conn.execute(_CREATE_TABLE)
    done = applied(conn)
    path = _recorded_path(done) or _choose_path(conn, timescaledb)
    _check(done, path)
    new: list[Migration] = []
    for migration in plan(path):
        if migration.version in {a.version for a in done}:
            continue
        try:
            with conn.transaction():
                if not migration.empty:
                    conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, file, path, checksum)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (migration.version, migration.name, migration.file, path, migration.checksum),
                )
        except psycopg.Error as e:
            raise MigrationError(
                f"migration {migration.file} failed on the {path} path: {describe(e)}"
            ) from e
        new.append(migration)
    return MigrationReport(path, tuple(new), LATEST, timescaledb_license(conn))


def applied(conn: psycopg.Connection) -> list[Applied]:
    """The migrations recorded in the database, in order (empty before the first)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute(
        "SELECT version, name, file, path, checksum FROM schema_migrations ORDER BY version"
    ).fetchall()
    return [Applied(*row) for row in rows]


def timescaledb_license(conn: psycopg.Connection) -> str | None:
    """``timescaledb.license`` where the extension is installed in this database, else None."""
    row = conn.execute(
        "SELECT CASE WHEN EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb')"
        " THEN current_setting('timescaledb.license', true) END"
    ).fetchone()
    return row[0] if row else None


def _recorded_path(done: list[Applied]) -> Path | None:
    if not done:
        return None
    path = done[0].path
    for known in PATHS:
        if known == path:
            return known
    raise MigrationError(f"schema_migrations names an unknown path {path!r}")


def _choose_path(conn: psycopg.Connection, timescaledb: bool) -> Path:
    """Install the extension where it is wanted and available; the path it gives."""
    if timescaledb:
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb')"
        ).fetchone()
        if row and row[0]:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            except psycopg.Error as e:
                raise MigrationError(
                    f"the server has TimescaleDB but CREATE EXTENSION failed: {describe(e)} "
                    "(is timescaledb in shared_preload_libraries, and the role a superuser? "
                    "Or set TRADINGBOT_DB_TIMESCALEDB=off for plain tables)"
                ) from e
    license_ = timescaledb_license(conn) if timescaledb else None
    if license_ == "timescale":
        return "timescaledb-community"
    if license_ is not None:
        return "timescaledb-apache"
    return "postgresql"


def _check(done: list[Applied], path: Path) -> None:
    """Refuse a database newer than this build, or one whose applied files changed."""
    if done and done[-1].version > LATEST:
        raise MigrationError(
            f"the database's schema is v{done[-1].version}, newer than this build's "
            f"v{LATEST}: upgrade tradingbot (migrations only go forward)"
        )
    files = {m.version: m for m in plan(path)}
    for a in done:
        migration = files[a.version]
        if migration.file != a.file:
            raise MigrationError(
                f"migration {a.version:04d} was applied from {a.file} but this build has "
                f"{migration.file}: add a new migration instead of renaming one"
            )
        if migration.checksum != a.checksum:
            raise MigrationError(
                f"{a.file} changed after it was applied: migrations only go forward, "
                "so undo the edit and add a new migration"
            )


def verify(conn: psycopg.Connection) -> tuple[Path, int]:
    """The database's path and version; ``SchemaOutdated`` unless it is this build's."""
    done = applied(conn)
    version = done[-1].version if done else 0
    if version != LATEST:
        raise SchemaOutdated(
            f"the database's schema is v{version}, this build writes v{LATEST}: "
            "run `tradingbot db migrate`"
            + (" (after upgrading tradingbot)" if version > LATEST else "")
        )
    path = _recorded_path(done)
    if path is None:
        raise SchemaOutdated("the database has no schema: run `tradingbot db migrate`")
    return path, version
