"""Where the processes serve /metrics."""

from __future__ import annotations

import os


def metrics_host() -> str:
    """127.0.0.1, or ``TRADINGBOT_METRICS_HOST`` (``0.0.0.0`` inside docker compose)."""
    return os.environ.get("TRADINGBOT_METRICS_HOST", "127.0.0.1")
