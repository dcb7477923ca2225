"""Fleet SAC training from the command line: the evaluation's universe, the chronological
split in the checkpoint, the run record, a pause on collapse and a diverged run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import pytest

from rl_agents.checkpoints import load_checkpoint
from rl_agents.data import BYTETHEORY, chronological_split, load_bars, universe
from rl_agents.sac import __main__ as cli
from rl_agents.sac.agent import LOSS_NAMES
from rl_agents.training_monitor import Pause

QUICK = [
    "--env_type", "portfolio", "--symbols", "5",
    "--training.total_timesteps", "300", "--training.learning_starts", "100",
    "--training.batch_size", "64", "--training.hidden_sizes", "[32, 32]",
    "--training.device", "cpu", "--record-every", "100",
]  # fmt: skip
"""A fleet of five symbols, 300 steps: a few seconds on a CPU."""


def read_record(path: Path) -> list[dict[str, Any]]:
    """The run record's lines, each parsed as strict JSON (no NaN)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    lines = path.read_text().splitlines()
    return [json.loads(line, parse_constant=refuse) for line in lines]


def test_fleet_trains_on_the_evaluation_universe_and_records_split_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fleet.pt"

    code = cli.main([*QUICK, "--out", str(out)])

    assert code == 0
    whole = universe(load_bars(BYTETHEORY), 5)  # the universe `tradingbot demo` trades
    split = chronological_split(whole.n_steps)
    span = load_checkpoint(out).data_span
    assert span["symbols"] == list(whole.symbols)
    assert span["split"] == {name: list(bounds) for name, bounds in split.items()}
    assert span["steps"] == split["train"][1] - split["train"][0]
    assert span["last_timestamp_ns"] == int(whole.timestamps[split["train"][1] - 1])

    record_path = out.with_suffix(".jsonl")
    assert str(record_path) in capsys.readouterr().out
    record = read_record(record_path)
    assert [line["kind"] for line in record] == ["start", "progress", "progress", "progress", "end"]
    assert record[0]["symbols"] == list(whole.symbols)
    progress = record[1:-1]
    assert [line["step"] for line in progress] == [100, 200, 300]
    assert progress[0]["losses"] == {}  # before learning starts
    assert set(progress[-1]["losses"]) == set(LOSS_NAMES)
    assert progress[-1]["updates"] == 200
    assert all(0.0 < line["min_action_diversity"] <= 1.0 for line in progress)
    assert all(line["steps_per_s"] > 0.0 for line in progress)
    end = record[-1]
    assert end["outcome"] == "finished" and end["step"] == 300
    assert end["updates"] == 200 and end["transitions_per_s"] == pytest.approx(
        5 * end["steps_per_s"]
    )
    assert end["checkpoint"] == str(out) and end["eval_return"] is not None


def test_a_collapse_pauses_training_saves_the_checkpoint_and_calls_on_pause(
    tmp_path: Path,
) -> None:
    out = tmp_path / "paused.pt"
    calls: list[tuple[Pause, Path]] = []

    # Every window of 50 actions in 20 bins is below a diversity of 1: a certain collapse.
    code = cli.main(
        [*QUICK, "--pause-below", "1", "--out", str(out)],
        on_pause=lambda pause, path: calls.append((pause, path)),
    )

    assert code == 3
    [(pause, path)] = calls
    symbols = load_checkpoint(path).data_span["symbols"]
    assert path == out and pause.symbol == symbols[pause.agent]
    assert pause.step == 50 and pause.actions == 50 and pause.diversity < pause.threshold == 1.0
    assert load_checkpoint(path).metrics["paused_at_step"] == 50
    *_, paused, end = read_record(out.with_suffix(".jsonl"))
    assert paused["kind"] == "pause" and paused["symbol"] == pause.symbol
    assert paused["step"] == 50 and paused["checkpoint"] == str(out)
    assert end["outcome"] == "paused" and end["step"] == 50


def test_no_collapse_pause_trains_through_a_collapse(tmp_path: Path) -> None:
    out = tmp_path / "through.pt"
    calls: list[Pause] = []
    short = [*QUICK, "--training.total_timesteps", "60", "--training.learning_starts", "60"]

    code = cli.main(
        [*short, "--pause-below", "1", "--no-collapse-pause", "--out", str(out)],
        on_pause=lambda pause, _: calls.append(pause),
    )

    assert code == 0 and not calls
    assert read_record(out.with_suffix(".jsonl"))[-1]["outcome"] == "finished"


def test_symbols_is_refused_for_an_env_other_than_the_portfolio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--symbols", "5", "--out", str(tmp_path / "x.pt")])

    assert code == 2
    assert "--symbols" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_more_symbols_than_the_data_has_is_refused_with_the_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["--env_type", "portfolio", "--symbols", "100000"]) == 2
    assert "asked for 100000" in capsys.readouterr().err


class NaNRewardPendulum(gym.Wrapper[Any, Any, Any, Any]):
    """Pendulum whose rewards are NaN: the first update diverges."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(gym.make("Pendulum-v1", **kwargs))

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, np.nan, terminated, truncated, info


@pytest.mark.filterwarnings("ignore:.*reward is a NaN:UserWarning")
def test_a_diverged_run_ends_its_record_with_the_outcome(tmp_path: Path) -> None:
    gym.register("test/NaNRewardPendulum-v0", entry_point=NaNRewardPendulum)
    out = tmp_path / "nan.pt"

    code = cli.main(
        ["--env", "test/NaNRewardPendulum-v0", "--action_space.low", "-2",
         "--action_space.high", "2", "--training.total_timesteps", "40",
         "--training.learning_starts", "20", "--training.batch_size", "16",
         "--training.hidden_sizes", "[8]", "--training.device", "cpu", "--out", str(out)]
    )  # fmt: skip

    assert code == 4 and not out.exists()
    end = read_record(out.with_suffix(".jsonl"))[-1]
    assert end["outcome"] == "diverged" and end["loss"] == "critic_loss"
    assert end["step"] == 20  # the update after the 20 random steps
