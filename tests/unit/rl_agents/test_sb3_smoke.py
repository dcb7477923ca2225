"""Stable-Baselines3 runs on the environments unchanged: a smoke run, same-seed determinism
and a save/load round trip (as SB3's own tests/test_deterministic.py and test_save_load.py)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_checker import check_env

from rl_agents.envs import ContinuousTradingEnv, EnvConfig, HybridActionEnv, make_hybrid

CONFIG = EnvConfig(start=100, steps=60)
"""A short span of real bars: 59 steps per episode, so training crosses episode ends."""


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sac() -> SAC:
    model = SAC(
        "MlpPolicy",
        ContinuousTradingEnv(CONFIG),
        seed=0,
        learning_starts=50,
        buffer_size=1_000,
        batch_size=32,
        device="cpu",
    )
    return model.learn(total_timesteps=300)


def ppo(env: HybridActionEnv) -> PPO:
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, seed=0, device="cpu")
    return model.learn(total_timesteps=256)


def test_sb3_check_env_passes_on_the_continuous_env() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(ContinuousTradingEnv(CONFIG))


def test_sb3_check_env_passes_on_the_hybrid_env() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make_hybrid(config=CONFIG))


def test_sac_trains_300_steps_and_predicts_an_action_in_the_action_space(sac: SAC) -> None:
    env = ContinuousTradingEnv(CONFIG)
    obs, _ = env.reset(seed=0)

    action, _ = sac.predict(obs, deterministic=True)

    assert sac.num_timesteps == 300
    assert env.action_space.contains(action)
    env.step(action)  # the env takes the model's action as it comes


def test_sac_saved_and_loaded_predicts_the_same_actions(sac: SAC, tmp_path: Path) -> None:
    env = ContinuousTradingEnv(CONFIG)
    obs = np.stack([env.reset(seed=0)[0], *(env.step([0.5])[0] for _ in range(9))])
    path = tmp_path / "sac.zip"

    sac.save(path)
    loaded = SAC.load(path, device="cpu")

    assert np.array_equal(
        loaded.predict(obs, deterministic=True)[0], sac.predict(obs, deterministic=True)[0]
    )


def test_ppo_trains_on_the_discrete_hybrid_env_and_predicts_a_discrete_action() -> None:
    env = make_hybrid(config=CONFIG)
    model = ppo(env)
    obs, _ = env.reset(seed=0)

    action, _ = model.predict(obs, deterministic=True)

    assert model.num_timesteps == 256
    assert env.action_space == spaces.Discrete(7)
    assert env.action_space.contains(action)
    env.step(action)


def test_ppo_with_the_same_seed_learns_the_same_policy() -> None:
    first = ppo(make_hybrid(config=CONFIG))
    second = ppo(make_hybrid(config=CONFIG))

    a = first.policy.state_dict()
    b = second.policy.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
