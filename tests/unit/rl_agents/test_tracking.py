"""MLflow tracking of `tradingbot train`: what a run leaves in a real store (SQLite), read back
with MLflow's own client: parameters, metric histories, artifacts, status."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import pytest
from mlflow.artifacts import download_artifacts
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from rl_agents.checkpoints import load_checkpoint
from rl_agents.sac import __main__ as cli
from rl_agents.sac.agent import LOSS_NAMES
from rl_agents.sac.config import SACConfig
from rl_agents.tracking import flatten, local_store

FLEET = [
    "--env_type", "portfolio", "--symbols", "5",
    "--training.total_timesteps", "200", "--training.learning_starts", "50",
    "--training.batch_size", "32", "--training.hidden_sizes", "[16, 16]",
    "--training.device", "cpu", "--record-every", "50", "--eval-every", "100",
    "--select-every", "100", "--no-progress",
]  # fmt: skip
"""A fleet of five symbols, 200 steps, a validation and an evaluation every 100 steps."""
PENDULUM = [
    "--env", "Pendulum-v1", "--action_space.low", "-2", "--action_space.high", "2",
    "--training.total_timesteps", "40", "--training.learning_starts", "20",
    "--training.batch_size", "16", "--training.hidden_sizes", "[8]",
    "--training.device", "cpu", "--no-progress",
]  # fmt: skip
"""The smallest run: 40 steps."""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (each test has its own experiment)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def only_run(uri: str, experiment: str) -> Run:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {uri}"
    [run] = client.search_runs([found.experiment_id])
    return run


def steps(client: MlflowClient, run: Run, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, key)]


def test_a_tracked_run_logs_config_progress_checkpoint_and_finishes(
    tmp_path: Path, store: str
) -> None:
    out = tmp_path / "fleet.pt"

    code = cli.main([*FLEET, "--out", str(out), "--mlflow-uri", store, "--mlflow-experiment", "a"])

    assert code == 0
    run = only_run(store, "a")
    client = MlflowClient(store)
    assert run.info.status == "FINISHED" and run.info.run_name == "fleet"
    assert run.data.tags["outcome"] == "finished"
    checkpoint = load_checkpoint(out)

    # The parameters are the config, by its --section.key names, and the setup.
    params = run.data.params
    config = flatten(checkpoint.config.to_dict())
    assert {key: params[key] for key in config} == {key: str(v) for key, v in config.items()}
    assert params["training.seed"] == "0" and params["training.total_timesteps"] == "200"
    assert params["env"] == "tradingbot/PortfolioTrading-v0" and params["agents"] == "5"
    span = checkpoint.data_span
    assert params["data.split.train"] == str(span["split"]["train"])
    assert params["data.first_timestamp_ns"] == str(span["first_timestamp_ns"])
    assert params["data.n_symbols"] == "5" and params["run.record_every"] == "50"
    yaml_text = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert SACConfig.from_yaml(Path(yaml_text)) == checkpoint.config

    # The metrics are at the run record's steps, with its values.
    record = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    progress = [line for line in record if line["kind"] == "progress"]
    assert [line["step"] for line in progress] == [50, 100, 150, 200]
    assert steps(client, run, "actions/min_diversity") == [50, 100, 150, 200]
    assert steps(client, run, "resources/rss_megabytes") == [50, 100, 150, 200]
    for name in LOSS_NAMES:  # no losses before learning starts
        assert steps(client, run, f"train/{name}") == [100, 150, 200], name
    critic = client.get_metric_history(run.info.run_id, "train/critic_loss")
    assert [m.value for m in critic] == [line["losses"]["critic_loss"] for line in progress[1:]]
    diversity = client.get_metric_history(run.info.run_id, "actions/min_diversity")
    assert [m.value for m in diversity] == [line["min_action_diversity"] for line in progress]
    assert steps(client, run, "eval_return") == [100, 200]
    validations = [line for line in record if line["kind"] == "validation"]
    assert steps(client, run, "validation/return") == [100, 200]
    returns = client.get_metric_history(run.info.run_id, "validation/return")
    assert [m.value for m in returns] == [line["total_return"] for line in validations]
    assert steps(client, run, "validation/trade_frequency") == [100, 200]
    final = run.data.metrics
    assert final["final/steps"] == 200 and final["final/updates"] == 150
    assert final["resources/rss_megabytes"] > 0

    # The checkpoint and the record are artifacts; the checkpoint loads.
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"fleet.pt", "fleet.jsonl", "config.yaml", "data_span.json"} <= names
    copy = download_artifacts(
        run_id=run.info.run_id, artifact_path="fleet.pt", dst_path=str(tmp_path / "copy"),
        tracking_uri=store,
    )  # fmt: skip
    assert load_checkpoint(copy).version == checkpoint.version


def test_mlflow_tracks_to_a_store_beside_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "small.pt"

    assert cli.main([*PENDULUM, "--out", str(out), "--mlflow"]) == 0

    assert (out.parent / "mlflow.db").is_file()
    run = only_run(local_store(out), "tradingbot")
    assert run.info.status == "FINISHED"
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(out.parent)
    assert (Path(run.info.artifact_uri.removeprefix("file://")) / "small.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing in the working dir
    # The run's last evaluation (after the loop) is its eval_return at the last step.
    assert steps(MlflowClient(local_store(out)), run, "eval_return") == [40]


def test_a_run_without_the_options_creates_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert cli.main([*PENDULUM, "--out", str(tmp_path / "plain.pt")]) == 0

    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.jsonl", "plain.pt"]


def test_an_unusable_tracking_uri_is_one_line_and_exit_2_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bad.pt"

    code = cli.main([*PENDULUM, "--out", str(out), "--mlflow-uri", "nosuch://store"])

    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot track to nosuch://store: ")
    assert not out.exists() and not out.with_suffix(".jsonl").exists()


def test_a_server_that_does_not_answer_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's retries take minutes
    uri = f"http://127.0.0.1:{port}"

    code = cli.main([*PENDULUM, "--out", str(tmp_path / "x.pt"), "--mlflow-uri", uri])

    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: cannot track to {uri}: ") and "Connection" in line


def test_a_paused_run_ends_killed_with_the_checkpoint(tmp_path: Path, store: str) -> None:
    out = tmp_path / "paused.pt"

    # Every window of 50 actions in 20 bins is below a diversity of 1: a certain collapse.
    code = cli.main(
        [*PENDULUM, "--training.total_timesteps", "60", "--pause-below", "1", "--out", str(out),
         "--mlflow-uri", store, "--mlflow-experiment", "paused"]
    )  # fmt: skip

    assert code == 3
    run = only_run(store, "paused")
    assert run.info.status == "KILLED" and run.data.tags["outcome"] == "paused"
    assert run.data.metrics["final/paused_at_step"] == 50
    assert run.data.tags["pause.agent"] == "0"  # the only agent
    names = {a.path for a in MlflowClient(store).list_artifacts(run.info.run_id)}
    assert {"paused.pt", "paused.jsonl"} <= names


class NaNRewardPendulum(gym.Wrapper[Any, Any, Any, Any]):
    """Pendulum whose rewards are NaN: the first update diverges."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(gym.make("Pendulum-v1", **kwargs))

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, np.nan, terminated, truncated, info


@pytest.mark.filterwarnings("ignore:.*reward is a NaN:UserWarning")
def test_a_diverged_run_ends_failed_with_its_record(tmp_path: Path, store: str) -> None:
    gym.register("test/TrackedNaNPendulum-v0", entry_point=NaNRewardPendulum)
    out = tmp_path / "nan.pt"

    code = cli.main(
        [*PENDULUM, "--env", "test/TrackedNaNPendulum-v0", "--out", str(out),
         "--mlflow-uri", store, "--mlflow-experiment", "diverged"]
    )  # fmt: skip

    assert code == 4
    run = only_run(store, "diverged")
    assert run.info.status == "FAILED" and run.data.tags["outcome"] == "diverged"
    assert run.data.tags["diverged.loss"] == "critic_loss"
    names = {a.path for a in MlflowClient(store).list_artifacts(run.info.run_id)}
    assert names == {"config.yaml", "nan.jsonl"}  # no checkpoint: none was saved


def test_help_lists_the_mlflow_options() -> None:
    text = cli.parser().format_help()  # every config field's help formats (a "95%" included)

    assert "--mlflow " in text and "--mlflow-uri URI" in text and "--mlflow-experiment NAME" in text
