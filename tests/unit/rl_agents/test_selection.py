"""Checkpoint selection on the validation days by the evaluation's hard gates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.gates import GateLimits
from rl_agents.checkpoints import load_checkpoint
from rl_agents.data import load_bars, universe
from rl_agents.envs import EnvConfig, PortfolioTradingEnv
from rl_agents.sac import __main__ as cli
from rl_agents.sac.agent import SAC, Progress
from rl_agents.sac.config import SACConfig
from rl_agents.selection import CheckpointSelector, validate_fleet

N = 6
FRAME = universe(load_bars("bytetheory"), N, start=171, steps=36)
LOOSE = GateLimits(max_dominance=1.0, min_diversity=-1.0, trade_frequency=(0.0, 1.0))


def fleet(seed: int) -> SAC:
    config = SACConfig(env_type="portfolio", hidden_sizes=(16, 16), seed=seed, device="cpu")
    return SAC(config, obs_dim=63, action_dim=1, n_agents=N)


def test_validation_replays_every_day_with_the_deterministic_policy() -> None:
    env = PortfolioTradingEnv(EnvConfig(), frame=FRAME)
    agent = fleet(1)
    validation = validate_fleet(agent, env, step=10)

    # The same replay by hand: the deterministic actions and the env's fills.
    obs, _ = env.reset(options={"start": 0})
    actions, fills, done = [], 0, False
    while not done:
        action = agent.act(obs, deterministic=True)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        fills += info["fills"]
        done = terminated or truncated
    actions.append(agent.act(obs, deterministic=True))  # the last day's, never filled
    steps = len(actions)
    assert steps == FRAME.n_steps
    assert validation.total_return == pytest.approx(env.engine.equity / 100_000.0 - 1.0)
    assert validation.trade_frequency == pytest.approx(fills / (steps * N))
    shares = [np.bincount(np.minimum(((np.array(actions)[:, i] + 1) * 10).astype(int), 19),
                          minlength=20).max() / steps for i in range(N)]  # fmt: skip
    assert validation.dominant_bin == pytest.approx(max(shares))
    assert validation.worst == FRAME.symbols[int(np.argmax(shares))]
    assert [g.passed for g in validation.gates] == [
        validation.dominant_bin <= 0.60,
        validation.diversity > 0.40,
        0.05 <= validation.trade_frequency <= 0.60,
    ]


def test_the_selector_keeps_the_best_passing_weights_and_restores_them() -> None:
    env = PortfolioTradingEnv(EnvConfig(), frame=FRAME)
    selector = CheckpointSelector(env, every=10, after=5, limits=LOOSE, margin=0.0)
    agents = [fleet(seed) for seed in (1, 2, 3)]
    ran = [selector(Progress(step, {}, None, None, None, a)) for step, a in
           zip((10, 20, 30), agents, strict=True)]  # fmt: skip
    assert all(v is not None and v.passed for v in ran)
    assert selector(Progress(5, {}, None, None, None, agents[0])) is None  # before `after`
    assert selector(Progress(25, {}, None, None, None, agents[0])) is None  # not every 10
    best = max(range(3), key=lambda i: ran[i].total_return)  # type: ignore[union-attr]
    assert selector.best is ran[best]

    target = fleet(9)
    assert selector.restore(target) is ran[best]
    for mine, theirs in zip(
        target.actor.parameters(), agents[best].actor.parameters(), strict=True
    ):
        assert torch.equal(mine, theirs)


def test_nothing_is_restored_when_no_validation_passes() -> None:
    env = PortfolioTradingEnv(EnvConfig(), frame=FRAME)
    never = GateLimits(max_dominance=-1.0)
    selector = CheckpointSelector(env, every=1, limits=never)
    agent = fleet(1)
    validation = selector(Progress(1, {}, None, None, None, agent))
    assert validation is not None and not validation.passed
    before = [p.clone() for p in agent.actor.parameters()]
    assert selector.restore(agent) is None
    assert all(torch.equal(a, b) for a, b in zip(before, agent.actor.parameters(), strict=True))


def test_fleet_training_records_each_validation_and_the_selection(tmp_path: Path) -> None:
    out = tmp_path / "fleet.pt"
    argv = [
        "--env_type", "portfolio", "--symbols", "5", "--training.total_timesteps", "240",
        "--training.learning_starts", "60", "--training.batch_size", "32",
        "--training.hidden_sizes", "[16, 16]", "--training.device", "cpu",
        "--select-every", "60", "--out", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    lines = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    validations = [line for line in lines if line["kind"] == "validation"]
    assert [v["step"] for v in validations] == [120, 180, 240]
    selection = [line for line in lines if line["kind"] == "selection"]
    assert len(selection) == 1
    metrics = load_checkpoint(out).metrics
    assert all(v["selectable"] <= v["passed"] for v in validations)  # the margin only narrows
    passing = [v for v in validations if v["selectable"]]
    if passing:
        best = max(passing, key=lambda v: v["total_return"])
        assert selection[0]["selected_step"] == best["step"]
        assert selection[0]["margin"] == 0.05
        assert metrics["selected_step"] == best["step"]
        assert metrics["selection_margin"] == 0.05
        assert metrics["validation_return"] == pytest.approx(best["total_return"])
    else:
        assert selection[0]["selected"] is None and "selected_step" not in metrics


def test_the_selection_skips_weights_that_pass_the_gates_only_without_the_margin() -> None:
    env = PortfolioTradingEnv(EnvConfig(), frame=FRAME)
    agents = [fleet(seed) for seed in (1, 2, 3)]
    measured = [validate_fleet(a, env, step=0) for a in agents]
    # Limits that the best fleet passes by less than 0.05 on trade frequency: the selection
    # must take the best fleet that has the margin, if any has.
    best = max(range(3), key=lambda i: measured[i].total_return)
    floor = measured[best].trade_frequency - 0.01
    limits = GateLimits(max_dominance=1.0, min_diversity=-1.0, trade_frequency=(floor, 1.0))
    selector = CheckpointSelector(env, every=1, limits=limits, margin=0.05)
    ran = [selector(Progress(step, {}, None, None, None, a)) for step, a in
           zip((1, 2, 3), agents, strict=True)]  # fmt: skip
    best_run = ran[best]
    assert best_run is not None and best_run.passed and not selector.selectable(best_run)
    eligible = [i for i in range(3) if measured[i].trade_frequency >= floor + 0.05]
    if eligible:
        chosen = max(eligible, key=lambda i: measured[i].total_return)
        assert selector.best is ran[chosen]
    else:
        assert selector.best is None


def test_a_margin_that_leaves_no_trade_frequency_is_refused() -> None:
    tight = GateLimits().tightened(0.05)
    assert tight.max_dominance == pytest.approx(0.55)
    assert tight.min_diversity == pytest.approx(0.45)
    assert tight.trade_frequency == pytest.approx((0.10, 0.55))
    with pytest.raises(ValueError, match="empties the trade frequency range"):
        GateLimits().tightened(0.3)
    with pytest.raises(ValueError, match="share in"):
        GateLimits().tightened(-0.01)
    env = PortfolioTradingEnv(EnvConfig(), frame=FRAME)
    with pytest.raises(ValueError, match="empties"):
        CheckpointSelector(env, every=1, margin=0.3)
    assert cli.main(["--env_type", "portfolio", "--select-margin", "0.3", "--out", "x.pt"]) == 2


def test_validation_through_the_options_measures_the_actions_the_env_traded() -> None:
    from rl_agents.options import wrap_env
    from rl_agents.options.config import OptionsConfig

    base = PortfolioTradingEnv(EnvConfig(), frame=FRAME)
    env = wrap_env(base, OptionsConfig(enabled=True))
    config = SACConfig(env_type="portfolio", hidden_sizes=(16, 16), seed=2, device="cpu")
    width = int(np.prod(env.observation_space.shape or (0,))) // N
    agent = SAC(config, obs_dim=width, action_dim=1, n_agents=N)

    validation = validate_fleet(agent, env, step=10)

    # By hand: the options' actions, not the agent's, are what was traded.
    obs, _ = env.reset(options={"start": 0})
    traded, agents_own, done = [], [], False
    while not done:
        action = agent.act(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        traded.append(info["traded_actions"])
        agents_own.append(action)
        done = terminated or truncated
    assert not np.allclose(np.concatenate(traded), np.concatenate(agents_own))
    assert validation.total_return == pytest.approx(
        base.engine.equity / EnvConfig().rules.initial_cash - 1.0
    )
    assert 0.0 <= validation.trade_frequency <= 1.0
