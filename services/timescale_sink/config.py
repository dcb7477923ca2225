"""TimescaleDB-sink settings (``TRADINGBOT_SINK_*``); the database's are ``TRADINGBOT_DB_*``."""

from __future__ import annotations

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict


class SinkConfig(BaseSettings):
    """How the sink batches, retries and reports."""

    model_config = SettingsConfigDict(env_prefix="TRADINGBOT_SINK_", frozen=True, extra="ignore")

    group_id: str = "tradingbot-timescale-sink"
    """Consumer group whose committed offsets say what the database already has."""
    batch_records: PositiveInt = 10_000
    """Most records in one database transaction."""
    linger_ms: NonNegativeInt = 100
    """How long a batch waits to fill once its first record is in."""
    retry_s: PositiveFloat = 300.0
    """How long a lost database is retried (with backoff) before the sink gives up."""
    refresh_interval_s: PositiveFloat = 30.0
    """Least seconds between refreshes of the daily rollups while rows arrive (and at run ends)."""
    migrate: bool = True
    """Migrate the schema on start (``tradingbot db migrate`` does the same)."""
    metrics_port: int = Field(9106, ge=0, le=65535)
    """Port of /metrics (0: none)."""
