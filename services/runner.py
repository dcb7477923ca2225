"""Process entry point shared by the services: logging, signals, exit codes."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.errors import Refusal
from services.kafka import BrokerError, Fenced


def run_service(name: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """Run ``main`` until it returns or SIGTERM/SIGINT arrives; exit non-zero on error.

    A refusal (port in use, run closed, broker lost, fenced) is one line on
    stderr and its exit code, never a traceback.
    """
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
        # Not after a refusal or an error: those end in one line of their own.
        logging.getLogger(name).info("peak memory %.0f MiB", _peak_mib())

    try:
        asyncio.run(guarded())
    except Refusal as e:
        _quiet()
        print(f"{name}: {e}" if not str(e).startswith(name) else str(e), file=sys.stderr)
        sys.exit(e.exit_code)
    except (BrokerError, Fenced) as e:
        _quiet()
        print(str(e) if str(e).startswith(name) else f"{name}: {e}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as e:
        _quiet()
        for line in setting_problems(e):
            print(f"{name}: {line}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - the process boundary: report and exit non-zero
        logging.getLogger(name).exception("failed: %s", e)
        sys.exit(1)


def _settings_classes(cls: type[BaseSettings] = BaseSettings) -> Iterator[type[BaseSettings]]:
    sub: type[BaseSettings]
    for sub in cls.__subclasses__():
        yield sub
        yield from _settings_classes(sub)


def setting_problems(error: ValidationError) -> list[str]:
    """One line per bad setting, naming its environment variable and what is wrong."""
    prefix = next(
        (
            str(c.model_config.get("env_prefix", ""))
            for c in _settings_classes()
            if c.__name__ == error.title
        ),
        "",
    )
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"])
        variable = f"{prefix}{field}".upper() if prefix else field
        given = problem.get("input")
        lines.append(f"{variable}={given!r} is not accepted: {problem['msg']}")
    return lines


def _peak_mib() -> float:
    """This process's peak resident memory since it started (``VmHWM``; exec resets it).

    ``ru_maxrss`` is not used where ``/proc`` answers: a child starts with the
    peak of the parent it was forked from.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quiet() -> None:
    """Silence what the clients' abandoned futures log at exit: the refusal says it all."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
