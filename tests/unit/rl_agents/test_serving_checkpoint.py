"""A trained SAC checkpoint served through the symbol agents' ``make_policy``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rl_agents.checkpoints import (
    CheckpointMismatch,
    load_checkpoint,
    save_checkpoint,
    trading_feature_names,
)
from rl_agents.data import load_bars, universe
from rl_agents.envs import ContinuousTradingEnv, EnvConfig
from rl_agents.policies import make_policy
from rl_agents.sac.agent import train
from rl_agents.sac.config import SACConfig
from services.cli import main as cli_main

TEMPLATES = Path(__file__).resolve().parents[3] / "rl_agents" / "sac" / "templates"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    env = ContinuousTradingEnv(
        EnvConfig(), frame=universe(load_bars("bytetheory"), 1, start=0, steps=60)
    )
    config = SACConfig(total_timesteps=150, learning_starts=50, batch_size=32, seed=3)
    result = train(env, config)
    path = tmp_path_factory.mktemp("ckpt") / "sac.pt"
    return save_checkpoint(
        path,
        result.agent,
        observation_space=env.observation_space,
        action_space=env.action_space,
        feature_names=trading_feature_names(10),
    )


def test_symbol_agents_serve_a_checkpoint_as_one_batched_policy(checkpoint: Path) -> None:
    policy = make_policy(f"sac:{checkpoint}", window=10)
    obs = np.random.default_rng(0).uniform(-1, 1, (143, 63)).astype(np.float32)

    actions = policy.act(obs)

    assert policy.name == "sac" and policy.version
    assert actions.shape == (143,)
    assert np.all(np.abs(actions) <= 1.0)
    assert np.array_equal(actions, policy.act(obs))  # deterministic serving


def test_a_checkpoint_for_another_observation_window_is_refused(checkpoint: Path) -> None:
    with pytest.raises(CheckpointMismatch):
        make_policy(f"sac:{checkpoint}", window=5)


def test_tradingbot_train_writes_a_checkpoint_the_agents_can_serve(tmp_path: Path) -> None:
    out = tmp_path / "cli.pt"
    code = cli_main(
        [
            "train",
            "--config", str(TEMPLATES / "phase_a2_sac.yaml"),
            "--training.total_timesteps", "120",
            "--training.learning_starts", "60",
            "--training.batch_size", "32",
            "--eval-every", "0",
            "--out", str(out),
        ]
    )  # fmt: skip

    assert code == 0 and out.is_file()
    assert make_policy(f"sac:{out}", window=10).act(np.zeros((3, 63), np.float32)).shape == (3,)
    # Chronological split of the 245 days, recorded: trained on 0-171, evaluated on 171-207.
    span = load_checkpoint(out).data_span
    assert span["split"] == {"train": [0, 171], "validation": [171, 207], "test": [207, 245]}
    assert span["steps"] == 171
