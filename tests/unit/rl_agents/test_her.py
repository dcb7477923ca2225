"""Hindsight experience replay of return goals: the goal reward, relabelling with future
goals, the buffer's bounds, success accounting, the goal-conditioned envs, training with and
without it, and serving a checkpoint trained with it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rl_agents  # noqa: F401 - registers the trading environments
from rl_agents.checkpoints import load_checkpoint
from rl_agents.envs import ContinuousTradingEnv, EnvConfig, PortfolioTradingEnv
from rl_agents.her import (
    ACHIEVED,
    GOAL,
    GOAL_FEATURES,
    TIME_LEFT,
    GoalPolicy,
    HERConfig,
    ReturnGoalEnv,
    goal_reward,
    report,
    success_stats,
    training_space,
    with_goal,
    wrap_env,
)
from rl_agents.her.buffer import HERBuffer, future_indices
from rl_agents.policies import ProbePolicy, make_policy
from rl_agents.sac import ConfigError, ReplayBuffer, SACConfig, train
from rl_agents.sac import __main__ as cli
from rl_agents.sac.policy import SACPolicy

SMALL = SACConfig(device="cpu", hidden_sizes=(32, 32), batch_size=32, learning_starts=20)
HER = HERConfig(enabled=True)
PENALTY = 0.5


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- the goal reward


def test_goal_reward_keeps_the_profit_and_charges_only_the_steps_that_end_below_the_goal() -> None:
    extrinsic = np.array([0.01, 0.01, 0.01, -0.03])
    achieved = np.array([0.03, 0.02, 0.0, 0.05])

    rewards = goal_reward(extrinsic, achieved, 0.02, penalty=PENALTY)

    # at or above the goal: the profit alone; below it: the profit less the penalty
    np.testing.assert_allclose(rewards, [0.01, 0.01, 0.01 - PENALTY, -0.03])
    assert np.array_equal(goal_reward(extrinsic, achieved, 0.02, penalty=0.0), extrinsic)


# ---------------------------------------------------------------- relabelling

OBS_DIM = 4  # [transition id, goal, achieved, time left]


def her_buffer(
    k: int = 4, rows: int = 2, max_steps: int = 50, capacity: int = 10_000, seed: int = 0
) -> HERBuffer:
    replay = ReplayBuffer(capacity, OBS_DIM, 1)
    generator = torch.Generator().manual_seed(seed)
    return HERBuffer(
        replay, k=k, rows=rows, max_steps=max_steps, penalty=PENALTY, generator=generator
    )


def add_episode(
    buffer: HERBuffer,
    achieved: np.ndarray,
    *,
    first_id: int,
    goal: float = 0.02,
    terminated: bool = False,
) -> np.ndarray:
    """Add ``achieved [T, rows]`` (the returns after each step) as one episode ending at its
    last step (truncated, or terminated); row ids ``first_id + t * rows + i``; return the
    extrinsic rewards."""
    steps, rows = achieved.shape
    before = np.vstack([np.zeros((1, rows)), achieved[:-1]])
    extrinsic = achieved - before
    for t in range(steps):
        ids = first_id + t * rows + np.arange(rows)
        obs = np.stack([ids, np.full(rows, goal), before[t], np.full(rows, 1 - t / steps)], 1)
        nxt = np.stack(
            [ids, np.full(rows, goal), achieved[t], np.full(rows, 1 - (t + 1) / steps)], 1
        )
        last = t == steps - 1
        buffer.add(
            obs, np.full((rows, 1), 0.5), extrinsic[t], nxt,
            last and terminated, last and not terminated, np.arange(rows),
        )  # fmt: skip
    return extrinsic


def stored(buffer: HERBuffer) -> dict[str, np.ndarray]:
    replay, n = buffer.replay, len(buffer.replay)
    return {
        "obs": replay.observations[:n].numpy(),
        "next": replay.next_observations[:n].numpy(),
        "reward": replay.rewards[:n].numpy(),
        "terminated": replay.terminated[:n].numpy(),
        "truncated": replay.truncated[:n].numpy(),
        "ids": replay.agent_ids[:n].numpy(),
    }


def test_each_transition_gets_k_goals_from_its_own_future_with_recomputed_rewards() -> None:
    rng = np.random.default_rng(1)
    buffer = her_buffer(k=4, rows=2)
    steps, rows = 8, 2
    achieved = np.cumsum(rng.normal(0, 0.01, (steps, rows)), axis=0).astype(np.float32)

    extrinsic = add_episode(buffer, achieved, first_id=0)

    data = stored(buffer)
    assert len(buffer) == steps * rows * (1 + 4)
    originals = slice(0, steps * rows)
    # The originals are stored with the goal reward of their own goal.
    expected = goal_reward(extrinsic.reshape(-1), achieved.reshape(-1), 0.02, PENALTY)
    np.testing.assert_allclose(data["reward"][originals], expected, rtol=1e-6)
    copies = {key: value[steps * rows :] for key, value in data.items()}
    ids = copies["obs"][:, 0].astype(int)
    assert np.array_equal(np.bincount(ids, minlength=steps * rows), np.full(steps * rows, 4))
    t, i = ids // rows, ids % rows
    goals = copies["obs"][:, GOAL]
    for row in range(len(ids)):
        future = achieved[t[row] :, i[row]]  # what this symbol achieved from step t on
        assert goals[row] in future
    assert np.array_equal(copies["next"][:, GOAL], goals)
    np.testing.assert_array_equal(copies["obs"][:, ACHIEVED], data["obs"][ids, ACHIEVED])
    np.testing.assert_array_equal(copies["next"][:, ACHIEVED], achieved[t, i])
    np.testing.assert_array_equal(copies["obs"][:, TIME_LEFT], data["obs"][ids, TIME_LEFT])
    recomputed = goal_reward(extrinsic[t, i], achieved[t, i], goals, PENALTY)
    np.testing.assert_allclose(copies["reward"], recomputed, rtol=1e-6)
    assert np.array_equal(copies["ids"], i)
    # The last transition's only future is its own next observation: a relabelled success.
    last = t == steps - 1
    assert np.all(goals[last] == achieved[-1, i[last]])
    np.testing.assert_allclose(copies["reward"][last], extrinsic[-1, i[last]], rtol=1e-6)
    # Over many copies, early transitions draw goals from several later steps.
    assert len(np.unique(goals[t == 0])) > 1


def test_relabelled_copies_keep_termination_and_truncation_and_stay_in_their_episode() -> None:
    buffer = her_buffer(k=3, rows=1)
    up = np.arange(1, 6, dtype=np.float32).reshape(5, 1) * 0.01  # episode 1: 0.01 .. 0.05
    down = -up  # episode 2: -0.01 .. -0.05

    add_episode(buffer, up, first_id=0, terminated=False)
    add_episode(buffer, down, first_id=100, terminated=True)

    data = stored(buffer)
    copies = np.arange(len(buffer)) % (5 * 4) >= 5  # per episode: 5 originals, then 15 copies
    ids = data["obs"][:, 0].astype(int)
    first, second = copies & (ids < 100), copies & (ids >= 100)
    assert first.sum() == second.sum() == 15
    assert np.all(data["obs"][first, GOAL] > 0) and np.all(data["obs"][second, GOAL] < 0)
    for name, ended in (("truncated", first), ("terminated", second)):
        last_step = ids[ended] % 100 == 4
        assert np.all(data[name][ended][last_step] == 1.0)
        assert np.all(data[name][ended][~last_step] == 0.0)
    assert np.all(data["terminated"][first] == 0.0) and np.all(data["truncated"][second] == 0.0)


def test_future_indices_never_point_before_the_transition() -> None:
    uniform = np.random.default_rng(0).random((6, 1000))

    index = future_indices(6, uniform)

    t = np.arange(6)[:, None]
    assert np.all(index >= t) and np.all(index <= 5)
    assert all(set(index[s]) == set(range(s, 6)) for s in range(6))  # every future step drawn


def test_buffer_holds_at_most_its_capacity_and_relabels_long_episodes_in_bounded_pieces() -> None:
    buffer = her_buffer(k=4, rows=2, max_steps=5, capacity=64)
    achieved = np.linspace(0.0, 0.12, 24, dtype=np.float32).reshape(12, 2)

    add_episode(buffer, achieved, first_id=0)  # 12 steps: pieces of 5, 5 and 2

    assert len(buffer) == 64 and len(buffer.replay) == buffer.replay.capacity
    assert buffer.steps == 0 and buffer.episodes == 3
    assert buffer.relabelled == (5 + 5 + 2) * 2 * 4
    assert buffer._obs.shape == (5, 2, OBS_DIM)  # what waits never grows past max_steps
    # The newest copies (the last piece: steps 10 and 11) drew goals from that piece only.
    data = stored(buffer)
    recent = data["obs"][data["obs"][:, 0] >= 20]
    copies = recent[recent[:, GOAL] != 0.02]
    assert len(copies) and np.all(np.isin(copies[:, GOAL], achieved[10:]))


def test_relabelling_draws_from_the_generator_it_is_given() -> None:
    achieved = np.cumsum(np.full((6, 2), 0.01, dtype=np.float32), axis=0)
    runs = []
    for seed in (7, 7, 8):
        buffer = her_buffer(seed=seed)
        add_episode(buffer, achieved, first_id=0)
        runs.append(stored(buffer)["obs"])

    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_k_zero_stores_the_goal_conditioned_transitions_only() -> None:
    buffer = her_buffer(k=0)
    add_episode(buffer, np.full((4, 2), 0.03, dtype=np.float32), first_id=0)

    assert len(buffer) == 8 and buffer.relabelled == 0


# ---------------------------------------------------------------- success


def test_success_statistics_of_constructed_goal_episodes() -> None:
    goals = [0.02, 0.02, 0.01, 0.0]
    achieved = [0.03, 0.0, 0.01, -0.01]  # reached, missed, reached exactly, missed

    stats = success_stats(goals, achieved)

    assert stats["her_success_rate"] == 0.5
    assert stats["her_goal_mean"] == pytest.approx(0.0125)
    assert stats["her_achieved_mean"] == pytest.approx(0.0075)
    assert stats["her_episodes"] == 4
    assert success_stats([], []) == {}


@pytest.mark.parametrize(("goal", "rate"), [(0.0, 1.0), (0.02, 0.0), (-0.01, 1.0)])
def test_holding_cash_achieves_exactly_nothing_and_succeeds_only_for_goals_up_to_zero(
    goal: float, rate: float
) -> None:
    env = wrap_env(ContinuousTradingEnv(EnvConfig(steps=60)), HERConfig(goal=goal, horizon=10))

    for episode in range(3):
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
            done = terminated or truncated

    assert report(env) == {
        "her_success_rate": rate, "her_goal_mean": pytest.approx(goal),
        "her_achieved_mean": 0.0, "her_episodes": 3.0,
    }  # fmt: skip


def test_achieved_return_is_the_sum_of_the_episodes_rewards() -> None:
    env = wrap_env(ContinuousTradingEnv(EnvConfig(steps=60)), HERConfig(horizon=15))
    env.reset(seed=4)
    total, done = 0.0, False
    buy = np.ones(1, np.float32)
    while not done:
        obs, reward, terminated, truncated, _ = env.step(buy)
        total += float(reward)
        done = terminated or truncated

    assert total != 0.0
    assert obs[ACHIEVED] == pytest.approx(total, abs=1e-6)
    stats = report(env)
    assert stats["her_achieved_mean"] == pytest.approx(total)
    assert stats["her_success_rate"] == float(total >= 0.02)


def test_report_is_empty_for_an_env_without_goals_or_before_an_episode_ends() -> None:
    plain = ContinuousTradingEnv(EnvConfig(steps=40))
    assert report(plain) == {}
    wrapped = gym.wrappers.TimeLimit(wrap_env(plain, HER), max_episode_steps=100)
    wrapped.reset(seed=0)
    assert report(wrapped) == {}


# ---------------------------------------------------------------- the goal-conditioned envs


def test_continuous_env_observations_carry_goal_achieved_and_time_left() -> None:
    base = gym.make("tradingbot/ContinuousTrading-v0")
    config = HERConfig(enabled=True, goal=0.03, horizon=4)
    env = wrap_env(base, config)

    space, served = env.observation_space, base.observation_space
    assert isinstance(space, gym.spaces.Box) and isinstance(served, gym.spaces.Box)
    assert space.shape == (served.shape[0] + 3,) and space == training_space(served)
    assert np.array_equal(space.low[:-3], served.low) and space.dtype == served.dtype
    assert space.low[-3:].tolist() == [-5.0, -5.0, 0.0] and space.high[-3:].tolist() == [5, 5, 1]
    obs, _ = env.reset(seed=0)
    assert space.contains(obs)
    assert obs[-3:].tolist() == pytest.approx([0.03, 0.0, 1.0])
    ends = []
    for _ in range(4):
        obs, _, terminated, truncated, _ = env.step(np.ones(1, np.float32))
        assert space.contains(obs)
        ends.append((terminated, truncated))
    assert obs[TIME_LEFT] == 0.0
    assert ends == [(False, False)] * 3 + [(True, False)]  # the goal's time is up


def test_goal_episodes_start_where_the_reset_seed_says() -> None:
    base = ContinuousTradingEnv(EnvConfig())
    env = wrap_env(base, HERConfig(horizon=20))

    starts = [env.reset(seed=seed)[1]["step"] for seed in (1, 1, 2, 3, 4)]

    assert starts[0] == starts[1]
    assert len(set(starts[1:])) > 1
    assert all(0 <= s <= base.engine.last_step - 20 for s in starts)
    assert env.reset(seed=1, options={"start": 5})[1]["step"] == 5


def test_portfolio_env_gives_each_symbol_its_own_goal_and_achieved_return() -> None:
    base = PortfolioTradingEnv(EnvConfig(n_symbols=5, steps=60))
    env = wrap_env(base, HERConfig(goal=0.01, goal_spread=0.005, horizon=10))

    assert env.observation_space.shape == (5, base.engine.obs_width + 3)
    obs, _ = env.reset(seed=3)
    goals = obs[:, GOAL]
    assert len(set(goals.tolist())) == 5 and np.all(np.abs(goals - 0.01) <= 0.005)
    own = np.zeros(5)
    probe = ProbePolicy()
    for _ in range(6):
        obs, _, _, _, info = env.step(probe.act(obs[:, : -len(GOAL_FEATURES)]))
        own += info["symbol_rewards"]
    assert np.abs(own).max() > 0.0
    np.testing.assert_allclose(obs[:, ACHIEVED], own, atol=1e-7)
    assert np.array_equal(obs[:, GOAL], goals)


def test_her_config_refuses_values_it_cannot_use() -> None:
    for bad in ({"k": -1}, {"horizon": 0}, {"goal": 6.0}, {"goal_spread": -0.1},
                {"goal": 4.9, "goal_spread": 0.2}, {"miss_penalty": float("nan")}):  # fmt: skip
        with pytest.raises(ValueError, match="her\\."):
            HERConfig(**bad)
    text = "her: {enabled: true, k: 2, goal: 0.05, horizon: 30}"
    assert SACConfig.from_yaml(text).her == HERConfig(enabled=True, k=2, goal=0.05, horizon=30)
    with pytest.raises(ValueError, match="her.horizon must be >= 1"):
        SACConfig.from_yaml("her: {horizon: 0}")


# ---------------------------------------------------------------- training


def fleet_run(config: SACConfig, her: bool) -> tuple[list[float], torch.Tensor]:
    env: gym.Env = PortfolioTradingEnv(EnvConfig(n_symbols=5, steps=60))
    if her:
        env = wrap_env(env, config.her)
    result = train(env, config, eval_episodes=1)
    weights = torch.cat([p.detach().flatten() for p in result.agent.actor.parameters()])
    return list(result.agent.last_losses.values()), weights


FLEET = dataclasses.replace(SMALL, env_type="portfolio", total_timesteps=50, learning_starts=10)


def test_training_without_her_ignores_the_her_settings() -> None:
    default = fleet_run(FLEET, her=False)
    off = fleet_run(dataclasses.replace(FLEET, her=HERConfig(k=9, horizon=3, goal=1.0)), her=False)

    assert default[0] == off[0]
    assert torch.equal(default[1], off[1])


def test_training_with_her_is_deterministic_and_learns_from_the_relabelled_buffer() -> None:
    config = dataclasses.replace(FLEET, her=HERConfig(enabled=True, horizon=10))

    first, second = fleet_run(config, her=True), fleet_run(config, her=True)
    other_seed = fleet_run(dataclasses.replace(config, seed=1), her=True)
    without = fleet_run(FLEET, her=False)

    assert first[0] == second[0] and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], other_seed[1])
    assert first[1].shape != without[1].shape  # the actor reads the goal features
    assert all(np.isfinite(first[0]))


def test_her_training_refuses_an_env_without_goals() -> None:
    config = dataclasses.replace(FLEET, her=HER)
    with pytest.raises(ConfigError, match="wrap_env"):
        train(PortfolioTradingEnv(EnvConfig(n_symbols=5, steps=60)), config)


# ---------------------------------------------------------------- serving


class Recorder:
    """A policy that remembers the rows it is given and holds."""

    name, version = "recorder", "1"

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def act(self, observations: np.ndarray) -> np.ndarray:
        self.rows.append(observations.copy())
        return np.zeros(len(observations))


@pytest.mark.parametrize("portfolio", [True, False])
def test_served_achieved_return_tracks_the_one_training_accrues(portfolio: bool) -> None:
    config = HERConfig(enabled=True, horizon=12)
    base: gym.Env = (
        PortfolioTradingEnv(EnvConfig(n_symbols=5, steps=60))
        if portfolio
        else ContinuousTradingEnv(EnvConfig(steps=60))
    )
    env = wrap_env(base, config)
    inner = Recorder()
    served = GoalPolicy(inner, config, log_returns=not portfolio)
    probe = ProbePolicy()
    obs, _ = env.reset(seed=2)
    rows = obs.reshape(env.rows, -1)
    for _ in range(12):
        served.act(rows[:, :-3])  # what a symbol agent sees: no goal features
        np.testing.assert_allclose(inner.rows[-1][:, -3:], rows[:, -3:], atol=1e-3)
        obs, *_ = env.step(probe.act(rows[:, :-3]).reshape(base.action_space.shape))
        rows = obs.reshape(env.rows, -1)
    assert np.abs(rows[:, ACHIEVED]).max() > 2e-3  # the probe traded: there was a return
    served.act(rows[:, :-3])  # the horizon is over: a new goal episode starts
    np.testing.assert_allclose(inner.rows[-1][:, -3:], [[0.02, 0.0, 1.0]] * env.rows)


def test_served_goal_episodes_count_the_rows_that_reached_the_goal() -> None:
    served = GoalPolicy(Recorder(), HERConfig(enabled=True, horizon=1, goal=0.0))
    rows = np.zeros((4, 63), np.float32)
    rows[:, 60] = 0.5  # half the equity in each symbol
    served.act(rows)
    assert served.report() == {}  # no goal episode has ended
    rows[:, 9 * 6 + 1] = [0.1, 0.1, 0.1, -0.1]  # three gaps up, one down
    served.act(rows)
    assert served.report() == {
        "her_served_success_rate": 0.75, "her_served_episodes": 4.0, "her_goal": 0.0
    }  # fmt: skip


def test_a_call_with_another_number_of_rows_starts_every_symbol_afresh() -> None:
    inner = Recorder()
    served = GoalPolicy(inner, HER)
    rows = np.zeros((3, 63), np.float32)
    rows[:, 60] = 0.5  # half the equity in each symbol
    served.act(rows)
    rows[:, 9 * 6 + 1] = 0.1  # then a gap up
    served.act(rows)
    assert np.all(inner.rows[-1][:, ACHIEVED] > 0.0)
    served.act(rows[:2])
    assert inner.rows[-1].shape == (2, 66) and np.all(inner.rows[-1][:, ACHIEVED] == 0.0)


def test_her_checkpoint_is_trained_from_the_command_line_and_served_by_make_policy(
    tmp_path: Path,
) -> None:
    out = tmp_path / "her.pt"

    code = cli.main([
        "--her.enabled", "true", "--her.horizon", "20", "--training.total_timesteps", "200",
        "--training.learning_starts", "100", "--training.batch_size", "32",
        "--training.hidden_sizes", "[16, 16]", "--training.device", "cpu",
        "--eval-every", "1000", "--record-every", "0", "--no-progress", "--out", str(out),
    ])  # fmt: skip

    assert code == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.config.her.enabled
    assert checkpoint.observation.shape == (66,)
    assert checkpoint.observation.feature_names is not None
    assert checkpoint.observation.feature_names[-3:] == GOAL_FEATURES
    policy = make_policy(f"sac:{out}", window=10)
    assert isinstance(policy, GoalPolicy)
    assert (policy.name, policy.version) == ("sac", checkpoint.version)
    env = ContinuousTradingEnv(EnvConfig(steps=60))
    obs, _ = env.reset(seed=0)
    rows = np.repeat(obs[None], 4, axis=0)
    actions = policy.act(rows)
    assert actions.shape == (4,) and np.all(np.abs(actions) <= 1.0)
    inner = SACPolicy.from_checkpoint(out)
    assert inner.obs_dim == env.engine.obs_width + len(GOAL_FEATURES)
    expected = inner.act(with_goal(rows, 0.02, 0.0, 1.0))  # the first call: nothing achieved
    np.testing.assert_allclose(actions, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="66"):
        inner.act(rows)  # the actor cannot be served without the goal features


def test_wrapped_env_is_a_return_goal_env_through_other_wrappers() -> None:
    goals = wrap_env(ContinuousTradingEnv(EnvConfig(steps=40)), HERConfig(horizon=3))
    env = gym.wrappers.TimeLimit(goals, max_episode_steps=100)
    assert isinstance(env.env, ReturnGoalEnv)
    env.reset(seed=0)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        done = terminated or truncated
    assert report(env)["her_episodes"] == 1.0
