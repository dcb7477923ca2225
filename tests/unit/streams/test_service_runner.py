"""The services' process entry point: log levels from TRADINGBOT_LOG_LEVEL, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = """
import asyncio, logging
from services.runner import run_service
async def main():
    logging.getLogger("probe").info("info line")
    logging.getLogger("probe").warning("warning line")
run_service("probe", main)
"""


def run(level: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRADINGBOT_LOG_LEVEL": level}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, text=True, capture_output=True,
        timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("level", "info_shown"), [("info", True), ("INFO", True), ("warn", False)])
def test_log_levels_are_read_in_either_case_and_in_faust_spelling(
    level: str, info_shown: bool
) -> None:
    done = run(level)
    assert done.returncode == 0, done.stderr
    assert ("info line" in done.stderr) == info_shown
    assert "warning line" in done.stderr


def test_an_unknown_log_level_is_a_clear_error() -> None:
    done = run("loud")
    assert done.returncode != 0
    assert "TRADINGBOT_LOG_LEVEL='LOUD' is not a log level" in done.stderr


def test_evaluate_refuses_an_empty_fleet_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from services.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "--symbols", "0"])
    assert exited.value.code == 2
    assert "--symbols: must be >= 1, got 0" in capsys.readouterr().err
