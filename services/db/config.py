"""Where the projection's database is (``TRADINGBOT_DB_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_URL = "postgresql://tradingbot:tradingbot@127.0.0.1:5433/tradingbot"
"""The database of deploy/local/timescaledb/timescaledb.sh on its default port."""


class DatabaseConfig(BaseSettings):
    """Connection and pool settings of the projection's PostgreSQL / TimescaleDB."""

    model_config = SettingsConfigDict(env_prefix="TRADINGBOT_DB_", frozen=True, extra="ignore")

    url: str = LOCAL_URL
    """libpq connection URL (``postgresql://user:password@host:port/database``)."""
    pool_min: PositiveInt = 1
    """Connections the pool keeps open."""
    pool_max: PositiveInt = 4
    """Most connections the pool opens."""
    connect_timeout_s: PositiveFloat = 5.0
    """Seconds to wait for one connection attempt."""
    timescaledb: Literal["auto", "off"] = "auto"
    """``auto``: use the TimescaleDB extension where the server has it; ``off``: plain tables."""
