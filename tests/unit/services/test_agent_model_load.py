"""A model published to the symbol agents is loaded without stalling the agent's event loop.

Loading a checkpoint first imports torch (8 s on a cold 2-core box) and then
reads the file; on the event loop that would stop the group heartbeat, and a
group session (6 s) would expire under a stream of models. These tests run the
agent's own ``_load`` beside a ticking coroutine, with a model whose loading is
slow, and check that the loop kept ticking and the model is served after.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from core.events import ModelPublished
from core.rules import TradingRules
from rl_agents.policies import Policy, make_policy
from services.config import KafkaConfig
from services.symbol_agent import app
from services.symbol_agent.app import AgentConfig, SymbolAgent

LOAD_S = 2.0


def model(checkpoint: str, version: str) -> ModelPublished:
    return ModelPublished(
        event_id=f"model-{version}",
        cause_id="",
        run_id="",
        event_time=0,
        agent_id=AgentConfig().model_id,
        checkpoint=checkpoint,
        version=version,
        previous_checkpoint="",
        previous_version="",
        reason="test",
    )


def slow_make_policy(name: str, *, window: int) -> Policy:
    time.sleep(LOAD_S)  # what a cold torch import and a checkpoint read cost, blocking
    if name.startswith("sac:/missing"):
        raise FileNotFoundError(name)
    return make_policy("random", window=window)


async def load_beside_a_ticker(agent: SymbolAgent, published: ModelPublished) -> tuple:
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.ensure_future(tick())
    began = time.monotonic()
    problem = await agent._load(published)
    took = time.monotonic() - began
    done.set()
    await ticker
    return problem, took, max(gaps)


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> SymbolAgent:
    monkeypatch.setattr(app, "make_policy", slow_make_policy)
    return SymbolAgent(
        KafkaConfig(),
        AgentConfig(metrics_port=0),
        TradingRules(),
        policy=make_policy("momentum", window=10),
    )


def test_a_slow_model_is_loaded_while_the_event_loop_goes_on(agent: SymbolAgent) -> None:
    problem, took, longest_gap = asyncio.run(load_beside_a_ticker(agent, model("sac:/x.pt", "v2")))

    assert problem is None
    assert took >= LOAD_S  # the record waited for its model: records stay in order
    assert longest_gap < 0.5, f"the event loop stood still for {longest_gap:.2f} s"
    assert agent.policy.name == "random"


def test_a_slow_model_that_cannot_be_served_is_refused_and_the_policy_stays(
    agent: SymbolAgent,
) -> None:
    before = agent.policy
    problem, _, longest_gap = asyncio.run(
        load_beside_a_ticker(agent, model("/missing.pt", "hostile-1"))
    )

    assert problem is not None and "hostile-1" in problem and "missing" in problem
    assert longest_gap < 0.5, f"the event loop stood still for {longest_gap:.2f} s"
    assert agent.policy is before
