"""A training pause on a real broker: ``tradingbot train --alerts-bootstrap`` puts a
``CollapseDetected`` on ``monitor.alerts``, read back and decoded with the project's codec."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from core.events import CollapseDetected
from services.cli import main as cli_main
from services.kafka import read_topic
from streams.topics import MONITOR_ALERTS

FORCED_PAUSE = [
    "--env_type", "portfolio", "--symbols", "5",
    "--training.total_timesteps", "300", "--training.learning_starts", "100",
    "--training.batch_size", "64", "--training.hidden_sizes", "[32, 32]",
    "--training.device", "cpu",
    "--pause-below", "1",  # every window of 50 actions in 20 bins is below 1: a collapse
]  # fmt: skip


def test_a_training_pause_publishes_collapse_detected_on_monitor_alerts(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "it-training-pause.pt"

    code = cli_main(
        ["train", *FORCED_PAUSE, "--alerts-bootstrap", kafka_bootstrap, "--out", str(out)]
    )

    assert code == 3
    alerts = asyncio.run(
        read_topic(
            kafka_bootstrap,
            MONITOR_ALERTS.name,
            keep=lambda e: isinstance(e, CollapseDetected) and e.run_id == out.stem,
        )
    )
    pause = [
        line
        for line in map(json.loads, out.with_suffix(".jsonl").read_text().splitlines())
        if line["kind"] == "pause"
    ]
    assert len(alerts) == 1 and len(pause) == 1
    alert, paused = alerts[0], pause[0]
    assert isinstance(alert, CollapseDetected)
    assert alert.agent == paused["symbol"]  # the collapsed fleet head, by its symbol
    assert (alert.severity, alert.window) == ("critical", "training")
    assert alert.value == paused["diversity"] and alert.value < alert.threshold == 1.0
    assert alert.actions == paused["actions"] == 50


def test_a_pause_whose_alert_cannot_be_sent_exits_with_the_reason(
    tmp_path: Path,
    port_finder: Callable[[int], list[int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    [port] = port_finder(1)  # nothing listens there

    code = cli_main(
        ["train", *FORCED_PAUSE, "--alerts-bootstrap", f"127.0.0.1:{port}",
         "--out", str(tmp_path / "unsent.pt")]
    )  # fmt: skip

    assert code == 1
    assert "alert was not published" in capsys.readouterr().err
    assert (tmp_path / "unsent.pt").is_file()  # the checkpoint was saved all the same
