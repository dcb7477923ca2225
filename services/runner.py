"""Process entry point shared by the services: logging, signals, exit codes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any


def run_service(name: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """Run ``main`` until it returns or SIGTERM/SIGINT arrives; exit non-zero on error."""
    level = os.environ.get("TRADINGBOT_LOG_LEVEL", "INFO").upper()
    level = {"WARN": "WARNING"}.get(level, level)  # the collapse detector's (faust's) spelling
    if level not in logging.getLevelNamesMapping():
        sys.exit(f"{name}: TRADINGBOT_LOG_LEVEL={level!r} is not a log level (DEBUG, INFO, ...)")
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )

    async def guarded() -> None:
        task = asyncio.ensure_future(main())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            logging.getLogger(name).info("stopped by signal")

    try:
        asyncio.run(guarded())
    except Exception as e:  # noqa: BLE001 - the process boundary: report and exit non-zero
        logging.getLogger(name).exception("failed: %s", e)
        sys.exit(1)
