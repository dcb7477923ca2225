"""Model rollout by events: agents load a published checkpoint without restarting, and roll back.

A tiny SAC checkpoint is trained here, published on ``agent.models`` under a
key of this test's own, and served by the symbol agent of a real pipeline run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from core.events import ActionDecided, StepCompleted
from rl_agents.checkpoints import load_checkpoint, save_checkpoint, trading_feature_names
from rl_agents.data import load_bars, universe
from rl_agents.envs import ContinuousTradingEnv, EnvConfig
from rl_agents.sac.agent import train
from rl_agents.sac.config import SACConfig
from services import models
from services.kafka import read_run, read_topic
from services.pipeline import run_lockstep
from services.symbol_agent.app import AgentConfig
from streams.topics import AGENT_ACTIONS, SIM_CLOCK

FRAME = universe(load_bars("bytetheory"), 6, start=30, steps=12)
LONG = universe(load_bars("bytetheory"), 6, start=30, steps=80)
KEY = "it-rollout"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    env = ContinuousTradingEnv(EnvConfig(), frame=universe(load_bars("bytetheory"), 1, steps=40))
    result = train(env, SACConfig(total_timesteps=120, learning_starts=60, batch_size=32, seed=5))
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "sac.pt",
        result.agent,
        observation_space=env.observation_space,
        action_space=env.action_space,
        feature_names=trading_feature_names(10),
    )


def _policies(bootstrap: str, run_id: str) -> list[tuple[int, str, str]]:
    actions = asyncio.run(read_run(bootstrap, AGENT_ACTIONS.name, run_id))
    return sorted(
        {(a.step, a.policy, a.policy_version) for a in actions if isinstance(a, ActionDecided)}
    )


def _run(bootstrap: str, run_id: str, key: str) -> None:
    asyncio.run(
        run_lockstep(
            bootstrap=bootstrap, run_id=run_id, frame=FRAME, agent=AgentConfig(model_id=key)
        )
    )


def test_publish_mid_run_is_served_from_the_next_steps_without_restart(
    kafka_bootstrap: str, checkpoint: Path
) -> None:
    version = load_checkpoint(checkpoint).version
    run_id = "it-rollout-live"

    async def publish_at_step_4() -> None:
        await read_topic(
            kafka_bootstrap,
            SIM_CLOCK.name,
            keep=lambda e: isinstance(e, StepCompleted) and e.run_id == run_id,
            until=lambda e: isinstance(e, StepCompleted) and e.step >= 4,
            timeout_s=120,
        )
        await models.publish(kafka_bootstrap, str(checkpoint), version, KEY)

    async def scenario() -> None:
        await asyncio.gather(
            run_lockstep(
                bootstrap=kafka_bootstrap,
                run_id=run_id,
                frame=LONG,
                agent=AgentConfig(model_id=KEY),
            ),
            publish_at_step_4(),
        )

    asyncio.run(scenario())
    served = _policies(kafka_bootstrap, run_id)

    assert served[0][1] == "momentum"
    assert served[-1] == (LONG.n_steps - 1, "sac", version)
    first_sac = min(step for step, policy, _ in served if policy == "sac")
    assert all(policy == "sac" for step, policy, _ in served if step >= first_sac)


def test_rollback_returns_the_agents_to_the_previous_model(
    kafka_bootstrap: str, checkpoint: Path
) -> None:
    version = load_checkpoint(checkpoint).version
    key = f"{KEY}-rollback"  # history: baseline, then this checkpoint
    asyncio.run(models.publish(kafka_bootstrap, str(checkpoint), version, key))
    _run(kafka_bootstrap, "it-rollout-published", key)
    event = asyncio.run(models.rollback(kafka_bootstrap, key))
    _run(kafka_bootstrap, "it-rollout-rolled-back", key)

    assert {p for _, p, _ in _policies(kafka_bootstrap, "it-rollout-published")} == {"sac"}
    assert (event.reason, event.previous_version, event.version) == (
        "rollback",
        version,
        "baseline",
    )
    assert {p for _, p, _ in _policies(kafka_bootstrap, "it-rollout-rolled-back")} == {"momentum"}


def test_rolling_back_the_baseline_is_refused(kafka_bootstrap: str) -> None:
    with pytest.raises(models.ModelError, match="nothing to roll back"):
        asyncio.run(models.rollback(kafka_bootstrap, "it-never-published"))
