"""Checkpoint files: round trips to identical actions, their contents, and refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rl_agents.checkpoints import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointMismatch,
    describe_env,
    load_checkpoint,
    save_checkpoint,
    trading_feature_names,
)
from rl_agents.envs import ContinuousTradingEnv, EnvConfig
from rl_agents.sac import SAC, Batch, SACConfig
from rl_agents.sac.policy import SACPolicy

CONFIG = SACConfig(device="cpu", hidden_sizes=(32, 32), seed=5)
OBS = spaces.Box(-5.0, 5.0, (63,), dtype=np.float32)
ACTIONS = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)


def trained_agent(config: SACConfig = CONFIG, updates: int = 5) -> SAC:
    agent = SAC(config, obs_dim=63, action_dim=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(updates):
        agent.update(batch(g))
    return agent


def batch(g: torch.Generator, n: int = 32) -> Batch:
    return Batch(
        torch.randn(n, 63, generator=g), torch.rand(n, 1, generator=g) * 2 - 1,
        torch.randn(n, generator=g), torch.randn(n, 63, generator=g), torch.zeros(n),
        torch.zeros(n), torch.zeros(n, dtype=torch.int64),
    )  # fmt: skip


def observations(n: int = 143) -> np.ndarray:
    return np.random.default_rng(1).uniform(-5, 5, (n, 63)).astype(np.float32)


def test_save_and_load_give_identical_actions(tmp_path: Path) -> None:
    agent = trained_agent()
    path = save_checkpoint(tmp_path / "sac.pt", agent, observation_space=OBS, action_space=ACTIONS)

    loaded = load_checkpoint(path, OBS, ACTIONS).agent()

    obs = observations()
    assert np.array_equal(loaded.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    assert np.array_equal(loaded.act(obs), agent.act(obs))  # the noise generator too
    served = SACPolicy.from_checkpoint(path, OBS, ACTIONS).act(obs)
    assert np.array_equal(served, SACPolicy(agent, "x").act(obs))


def test_loaded_agent_continues_training_exactly_like_the_original(tmp_path: Path) -> None:
    agent = trained_agent()
    path = save_checkpoint(tmp_path / "sac.pt", agent, observation_space=OBS, action_space=ACTIONS)
    loaded = load_checkpoint(path).agent()

    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert agent.update(batch(g1)) == loaded.update(batch(g2))
    assert loaded.updates == agent.updates == 6


def test_checkpoint_records_specs_config_span_seed_metrics_and_version(tmp_path: Path) -> None:
    env = ContinuousTradingEnv(EnvConfig(episode_length=20))
    names, span = describe_env(env)
    agent = trained_agent(dataclasses.replace(CONFIG, env_type="continuous"))
    path = save_checkpoint(
        tmp_path / "nested" / "sac.pt",
        agent,
        observation_space=env.observation_space,
        action_space=env.action_space,
        feature_names=names,
        data_span=span,
        metrics={"eval_return": 0.02},
    )

    checkpoint = load_checkpoint(path, env.observation_space, env.action_space)

    assert checkpoint.format_version == FORMAT_VERSION
    assert len(checkpoint.version) == 12  # a hash of the actor's weights by default
    assert checkpoint.observation.shape == (63,) and checkpoint.observation.dtype == "float32"
    assert checkpoint.observation.feature_names == trading_feature_names(10)
    assert checkpoint.observation.feature_names[0] == "log_return[t-9]"
    assert checkpoint.observation.feature_names[-1] == "unrealized_return"
    assert checkpoint.action.low.tolist() == [-1.0]
    assert checkpoint.config == agent.config
    assert checkpoint.seed == 5
    assert checkpoint.metrics == {"eval_return": 0.02}
    assert span is not None and checkpoint.data_span["symbols"] == span["symbols"]
    assert checkpoint.data_span["steps"] == env.frame.n_steps
    assert SACPolicy.from_checkpoint(path).version == checkpoint.version
    assert not (tmp_path / "nested" / "sac.pt.partial").exists()


def test_explicit_version_is_kept_and_served(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "sac.pt", trained_agent(), observation_space=OBS, action_space=ACTIONS,
        version="2025-01-14.1",
    )  # fmt: skip

    policy = SACPolicy.from_checkpoint(path, OBS, ACTIONS)

    assert (policy.name, policy.version) == ("sac", "2025-01-14.1")


@pytest.mark.parametrize(
    ("obs_space", "action_space", "message"),
    [
        (spaces.Box(-5.0, 5.0, (33,), np.float32), ACTIONS, r"observation shape \(63,\) != "),
        (OBS, spaces.Box(-2.0, 2.0, (1,), np.float32), r"action low bounds differ"),
        (spaces.Box(-5.0, 5.0, (63,), np.float64), ACTIONS, r"observation dtype float32"),
        (OBS, spaces.Box(-1.0, 1.0, (2,), np.float32), r"action shape \(1,\) != expected \(2,\)"),
    ],
)
def test_checkpoint_for_other_spaces_is_refused_naming_the_difference(
    tmp_path: Path, obs_space: spaces.Box, action_space: spaces.Box, message: str
) -> None:
    path = save_checkpoint(
        tmp_path / "sac.pt", trained_agent(), observation_space=OBS, action_space=ACTIONS
    )

    with pytest.raises(CheckpointMismatch, match=message):
        load_checkpoint(path, obs_space, action_space)
    with pytest.raises(CheckpointMismatch, match="train a new checkpoint"):
        SACPolicy.from_checkpoint(path, obs_space, action_space)


def test_checkpoint_with_other_feature_names_is_refused(tmp_path: Path) -> None:
    names = trading_feature_names(10)
    path = save_checkpoint(
        tmp_path / "sac.pt", trained_agent(), observation_space=OBS, action_space=ACTIONS,
        feature_names=names,
    )  # fmt: skip
    swapped = (names[1], names[0], *names[2:])

    with pytest.raises(CheckpointMismatch, match="feature names differ at 0: 'log_return"):
        load_checkpoint(path, OBS, ACTIONS, expected_feature_names=swapped)


def test_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    junk, other = tmp_path / "junk.pt", tmp_path / "other.pt"
    junk.write_bytes(b"not a checkpoint")
    torch.save({"actor": {}}, other)

    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="no format_version"):
        load_checkpoint(other)


def test_checkpoint_from_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "sac.pt", trained_agent(), observation_space=OBS, action_space=ACTIONS
    )
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = FORMAT_VERSION + 1
    torch.save(raw, path)

    with pytest.raises(CheckpointError, match="upgrade tradingbot"):
        load_checkpoint(path)


def test_checkpoint_trained_on_a_gpu_loads_on_the_cpu_with_a_fresh_noise_generator(
    tmp_path: Path,
) -> None:
    agent = trained_agent()
    path = save_checkpoint(tmp_path / "sac.pt", agent, observation_space=OBS, action_space=ACTIONS)
    raw = torch.load(path, weights_only=True)
    raw["state"]["generator_device"] = "cuda"  # a CUDA generator's state: seed and offset
    raw["state"]["generator"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(raw, path)

    loaded = load_checkpoint(path, OBS, ACTIONS).agent("cpu")

    obs = observations()
    assert np.array_equal(loaded.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    assert loaded.act(obs).shape == (143, 1)


def test_fleet_checkpoint_round_trip_serves_all_symbols(tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, env_type="portfolio")
    agent = SAC(config, obs_dim=63, action_dim=1, n_agents=143)
    obs_space = spaces.Box(-5.0, 5.0, (143, 63), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (143,), np.float32)
    path = save_checkpoint(
        tmp_path / "fleet.pt", agent, observation_space=obs_space, action_space=act_space
    )

    policy = SACPolicy.from_checkpoint(path, obs_space, act_space)

    obs = observations()
    assert np.array_equal(policy.act(obs), agent.act(obs, deterministic=True).astype(np.float64))
