"""Errors of the database projection; psycopg's are translated at the boundary."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from services.errors import Refusal


class DatabaseError(RuntimeError):
    """Something about the projection's database went wrong."""


class DatabaseUnavailable(DatabaseError, Refusal):
    """The database cannot be reached (or stayed away longer than the retry window)."""


class MigrationError(DatabaseError, Refusal):
    """The schema cannot be migrated as asked (the message says how to fix it)."""


class SchemaOutdated(DatabaseError, Refusal):
    """The database's schema is not the version this build writes."""


class RowRejected(DatabaseError):
    """The database refused a record's rows (a constraint, a value out of range)."""


TRANSIENT_SQLSTATES = frozenset(
    {
        pg_errors.SerializationFailure.sqlstate,
        pg_errors.DeadlockDetected.sqlstate,
        pg_errors.LockNotAvailable.sqlstate,
        pg_errors.QueryCanceled.sqlstate,
        pg_errors.AdminShutdown.sqlstate,
        pg_errors.CrashShutdown.sqlstate,
        pg_errors.CannotConnectNow.sqlstate,
        pg_errors.TooManyConnections.sqlstate,
    }
)


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same work later may succeed (a lost or restarting server)."""
    if isinstance(error, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(error, psycopg.Error):
        sqlstate = error.sqlstate or ""
        return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08")  # connection errors
    return isinstance(error, ConnectionError | TimeoutError)


def describe(error: BaseException) -> str:
    """A driver error's message on one line."""
    return " ".join(str(error).split()) or type(error).__name__
