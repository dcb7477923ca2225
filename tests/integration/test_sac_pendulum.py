"""Correctness of our SAC: it solves Pendulum-v1 like a reference implementation does.

A mean deterministic return of -250 over 10 episodes is where SAC's
Pendulum curves flatten out (random play scores about -1200). Every 1,000
steps the agent is evaluated and the run stops once it gets there; each seed
has 15,000 steps to do it. Needs no servers; about 20 to 60 s per seed on
two CPU cores (benchmarks/sac.py measures the speed).
"""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import pytest
import torch

from rl_agents.sac import ActionSpaceConfig, SACConfig, train

GOAL = -250.0
BUDGET = 15_000
CONFIG = SACConfig(
    total_timesteps=BUDGET,
    learning_starts=1_000,
    device="cpu",
    action_space=ActionSpaceConfig(low=-2.0, high=2.0),
)
"""The plan's SAC defaults (batch 256, lr 3e-4, 256x256 networks, one update per step)."""


@pytest.fixture(autouse=True)
def two_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sac_reaches_minus_250_on_pendulum_within_15000_steps(seed: int) -> None:
    config = SACConfig.from_dict({**CONFIG.to_dict(), "training": {
        **CONFIG.to_dict()["training"], "seed": seed,
    }})  # fmt: skip

    result = train(
        gym.make("Pendulum-v1"),
        config,
        eval_env=gym.make("Pendulum-v1"),
        eval_every=1_000,
        eval_episodes=10,
        stop_return=GOAL,
    )

    curve = ", ".join(f"{step}: {mean:.0f}" for step, mean in result.evaluations)
    assert result.final_return is not None
    assert result.final_return >= GOAL, f"seed {seed} evaluations: {curve}"
    assert result.steps <= BUDGET
