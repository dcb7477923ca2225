"""A collapse detector worker started as a process for one run (the integration tests')."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def detector_env(bootstrap: str, run_id: str, **settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "TRADINGBOT_BOOTSTRAP": bootstrap,
        "TRADINGBOT_DETECTOR_APP_ID": f"collapse-detector-{run_id}",
        "TRADINGBOT_DETECTOR_RUN_ID": run_id,
        **settings,
    }


def start_detector(env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "streams.collapse_detector"],
        env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE,
    )  # fmt: skip
