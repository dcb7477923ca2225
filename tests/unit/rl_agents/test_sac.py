"""SAC: its config and YAML form, the networks, one update, the NaN guard, same-seed
determinism, smoke runs on the trading envs and the serving adapter."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from rl_agents.checkpoints import load_checkpoint
from rl_agents.curiosity import ICMConfig
from rl_agents.envs import ContinuousTradingEnv, EnvConfig, PortfolioTradingEnv
from rl_agents.policies import Policy
from rl_agents.sac import (
    SAC,
    ActionSpaceConfig,
    Batch,
    ConfigError,
    FleetActor,
    Progress,
    ReplayBuffer,
    SACConfig,
    TrainingDiverged,
    TwinCritic,
    train,
)
from rl_agents.sac import __main__ as cli
from rl_agents.sac.agent import LOSS_NAMES
from rl_agents.sac.config import field_docs
from rl_agents.sac.networks import squash
from rl_agents.sac.policy import SACPolicy

SMALL = SACConfig(device="cpu", hidden_sizes=(32, 32), batch_size=32, learning_starts=50)
"""A config small enough for unit tests."""
PENDULUM = dataclasses.replace(
    SMALL, action_space=ActionSpaceConfig(low=-2.0, high=2.0), learning_starts=100
)
PLAN_TEMPLATE = """
# training/config_templates/continuous_sac_icm.yaml
algorithm: SAC
env_type: continuous
intrinsic_curiosity:
  enabled: true
  eta: 0.01
  beta: 0.2
action_space:
  type: Box
  low: -1.0
  high: 1.0
  smoothing: 3
training:
  total_timesteps: 100000
  learning_rate: 3e-4
  batch_size: 256
  buffer_size: 100000
"""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small networks run faster on one thread, and the timings do not disturb each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_batch(size: int, obs_dim: int, action_dim: int = 1, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        observations=torch.randn(size, obs_dim, generator=g),
        actions=torch.rand(size, action_dim, generator=g) * 2 - 1,
        rewards=torch.randn(size, generator=g),
        next_observations=torch.randn(size, obs_dim, generator=g),
        terminated=torch.zeros(size),
        truncated=torch.zeros(size),
        agent_ids=torch.zeros(size, dtype=torch.int64),
    )


# ---------------------------------------------------------------- config


def test_defaults_are_the_plans() -> None:
    config = SACConfig()

    assert (config.learning_rate, config.batch_size, config.buffer_size) == (3e-4, 256, 100_000)
    assert (config.gamma, config.tau, config.max_grad_norm) == (0.99, 0.005, 10.0)
    assert (config.train_freq, config.gradient_steps, config.total_timesteps) == (1, 1, 100_000)
    assert config.hidden_sizes == (256, 256)
    assert config.entropy_target(3) == -3.0
    icm = config.icm
    assert (icm.eta, icm.beta, icm.extrinsic_weight, icm.intrinsic_weight) == (
        0.01, 0.2, 0.9, 0.1,
    )  # fmt: skip
    assert icm.intrinsic_cap == 0.10


def test_plan_appendix_b_template_parses_with_its_string_learning_rate() -> None:
    config = SACConfig.from_yaml(PLAN_TEMPLATE)

    assert config.icm.enabled is True
    assert config.icm.eta == 0.01
    assert config.learning_rate == 3e-4  # YAML 1.1 reads 3e-4 as a string
    assert config.action_space == ActionSpaceConfig(low=-1.0, high=1.0, smoothing=3)
    assert config.total_timesteps == 100_000


def test_yaml_round_trip_gives_the_same_config(tmp_path: Path) -> None:
    config = SACConfig(
        env_type="portfolio",
        seed=4,
        hidden_sizes=(64, 32),
        target_entropy=-0.5,
        icm=ICMConfig(enabled=True, eta=0.05),
        action_space=ActionSpaceConfig(low=-2.0, high=2.0),
    )
    path = tmp_path / "sac.yaml"

    config.to_yaml(path)

    assert SACConfig.from_yaml(path) == config
    assert SACConfig.from_yaml(str(path)) == config
    assert SACConfig.from_dict(config.to_dict()) == config


def test_yaml_template_comments_every_key_with_its_docstring() -> None:
    text = SACConfig().to_yaml()

    assert "# Adam step size of the actor" in text
    assert "# Scale of the intrinsic reward" in text
    assert SACConfig.from_yaml(text) == SACConfig()


@pytest.mark.parametrize("kind", [SACConfig, ICMConfig, ActionSpaceConfig])
def test_every_config_field_has_a_docstring(kind: type) -> None:
    docs = field_docs(kind)

    assert set(docs) == {f.name for f in dataclasses.fields(kind)}
    assert all(docs.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trainning: {}", r"unknown key\(s\) \['trainning'\] in the config; known keys"),
        ("training: {learning_rat: 0.1}", r"\['learning_rat'\] in training; known keys: .*"),
        ("intrinsic_curiosity: {etta: 1}", r"\['etta'\] in intrinsic_curiosity"),
        ("training: {batch_size: big}", r"training.batch_size: expected int, got 'big'"),
        ("training: {batch_size: 2.5}", r"training.batch_size: expected int"),
        ("intrinsic_curiosity: {enabled: 1}", r"intrinsic_curiosity.enabled: expected bool"),
        ("algorithm: PPO", r"only SAC"),
        ("training: {gamma: 1.5}", r"training.gamma must be in \[0, 1\]"),
        ("action_space: {type: Discrete}", r"action_space.type: expected one of 'Box'"),
        ("training: [1, 2]", r"training must be a mapping"),
        ("a: [", r"not valid YAML"),
    ],
)
def test_bad_yaml_is_refused_with_a_message_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SACConfig.from_yaml(text)


def test_auto_device_is_cuda_when_available_else_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"

    assert SACConfig().torch_device().type == expected
    assert SACConfig(device="cpu").torch_device().type == "cpu"


def test_env_whose_action_bounds_differ_from_the_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="set action_space.low/high"):
        train(gym.make("Pendulum-v1"), SMALL)


# ---------------------------------------------------------------- networks


def test_fused_twin_critic_equals_two_separate_mlps() -> None:
    critic = TwinCritic(5, 2, (16, 8), torch.Generator().manual_seed(0))
    obs, actions = torch.randn(7, 5), torch.rand(7, 2)

    q = critic(obs, actions)

    assert q.shape == (2, 7)
    for k in range(2):
        x = torch.cat([obs, actions], dim=-1)
        for i, (w, b) in enumerate(zip(critic.weights, critic.biases, strict=True)):
            x = x @ w[k] + b[k]
            x = torch.relu(x) if i < 2 else x
        torch.testing.assert_close(q[k], x.squeeze(-1))


def test_frozen_critic_passes_gradients_to_the_actions_only() -> None:
    critic = TwinCritic(3, 1, (8,), torch.Generator().manual_seed(0))
    actions = torch.zeros(4, 1, requires_grad=True)

    critic(torch.randn(4, 3), actions, frozen=True).sum().backward()

    assert actions.grad is not None and actions.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_squashed_log_prob_equals_torch_tanh_transformed_normal() -> None:
    g = torch.Generator().manual_seed(0)
    mean, log_std, noise = (torch.randn(6, 3, generator=g) * 0.5 for _ in range(3))

    action, log_prob = squash(mean, log_std, noise)

    dist = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    torch.testing.assert_close(log_prob, dist.log_prob(action).sum(-1), rtol=1e-4, atol=1e-4)
    assert action.abs().max() < 1.0


def test_fleet_actor_maps_every_symbol_in_one_call() -> None:
    actor = FleetActor(143, 63, (32, 32), torch.Generator().manual_seed(0))
    obs = torch.randn(4, 143, 63)

    mean, log_std = actor(obs)
    action, log_prob = actor.sample(obs, None, torch.Generator().manual_seed(1))

    assert mean.shape == log_std.shape == action.shape == (4, 143, 1)
    assert log_prob.shape == (4, 143)


def test_fleet_actor_rows_of_sampled_symbols_use_their_own_heads() -> None:
    actor = FleetActor(5, 7, (16,), torch.Generator().manual_seed(0))
    obs = torch.randn(5, 7)

    whole, _ = actor(obs)
    rows, _ = actor(obs[[3, 0, 3]], torch.tensor([3, 0, 3]))

    torch.testing.assert_close(rows, whole[[3, 0, 3]])


def test_fleet_actor_heads_are_independent_per_symbol() -> None:
    actor = FleetActor(5, 7, (16,), torch.Generator().manual_seed(0))
    obs = torch.randn(2, 5, 7)
    before, _ = actor(obs)

    with torch.no_grad():
        actor.head_weight[2] += 1.0
    after, _ = actor(obs)
    actor.zero_grad()
    after[:, 4].sum().backward()

    changed = (after != before).squeeze(-1).any(0)
    assert changed.tolist() == [False, False, True, False, False]
    assert actor.head_weight.grad is not None
    touched = actor.head_weight.grad.abs().sum(dim=(1, 2)) > 0
    assert touched.tolist() == [False, False, False, False, True]


# ---------------------------------------------------------------- one update


def test_update_returns_finite_losses_and_moves_the_targets_by_tau() -> None:
    agent = SAC(SMALL, obs_dim=4, action_dim=2)
    target_before = [p.detach().clone() for p in agent.critic_target.parameters()]
    actor_before = [p.detach().clone() for p in agent.actor.parameters()]

    losses = agent.update(random_batch(32, 4, 2))

    assert tuple(losses) == LOSS_NAMES
    assert all(math.isfinite(v) for v in losses.values())
    assert agent.updates == 1
    tau = SMALL.tau
    for old, new, online in zip(
        target_before, agent.critic_target.parameters(), agent.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(new, old + tau * (online.detach() - old))
    assert any(
        not torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters(), strict=True)
    )


def test_actor_mean_penalty_adds_the_squared_pre_tanh_mean_to_the_actor_loss() -> None:
    batch = random_batch(64, 4, 2)
    plain = SAC(SMALL, obs_dim=4, action_dim=2)
    penalised = SAC(dataclasses.replace(SMALL, actor_mean_penalty=0.5), obs_dim=4, action_dim=2)
    with torch.no_grad():
        mean, _ = penalised.actor(batch.observations)
    expected = 0.5 * mean.square().mean().item()

    difference = penalised.update(batch)["actor_loss"] - plain.update(batch)["actor_loss"]

    assert difference == pytest.approx(expected, rel=1e-4)


def test_temperature_falls_when_the_policy_is_more_random_than_the_target() -> None:
    agent = SAC(dataclasses.replace(SMALL, target_entropy=-10.0), obs_dim=4, action_dim=1)

    first = agent.update(random_batch(32, 4))["alpha"]
    for seed in range(20):
        agent.update(random_batch(32, 4, seed=seed))

    assert agent.log_alpha.exp().item() < first


def test_nan_reward_raises_training_diverged_before_any_optimizer_steps() -> None:
    agent = SAC(SMALL, obs_dim=4, action_dim=1)
    first = agent.update(random_batch(32, 4))
    bad = random_batch(32, 4, seed=1)
    bad.rewards[5] = float("nan")
    before = {k: v.clone() for k, v in agent.state_dict()["critic"].items()}
    actor_before = {k: v.clone() for k, v in agent.state_dict()["actor"].items()}

    with pytest.raises(TrainingDiverged) as caught:
        agent.update(bad)

    error = caught.value
    assert (error.step, error.loss) == (2, "critic_loss")
    assert math.isnan(error.value)
    assert error.last_finite == first
    assert "update 2" in str(error) and "critic_loss" in str(error)
    assert all(torch.equal(before[k], v) for k, v in agent.critic.state_dict().items())
    assert all(torch.equal(actor_before[k], v) for k, v in agent.actor.state_dict().items())


def test_infinite_gradient_is_caught_as_well() -> None:
    agent = SAC(SMALL, obs_dim=4, action_dim=1)
    bad = random_batch(32, 4)
    bad.observations[0, 0] = float("inf")

    with pytest.raises(TrainingDiverged, match="not finite"):
        agent.update(bad)


# ---------------------------------------------------------------- training


def pendulum_run(seed: int, steps: int = 300) -> tuple[list[dict[str, float]], np.ndarray]:
    losses: list[dict[str, float]] = []

    def record(progress: Progress) -> None:
        losses.append(dict(progress.losses))

    config = dataclasses.replace(PENDULUM, seed=seed, total_timesteps=steps)
    result = train(gym.make("Pendulum-v1"), config, record, eval_episodes=1)
    probe = np.linspace(-1, 1, 30, dtype=np.float32).reshape(10, 3)
    return losses, result.agent.act(probe, deterministic=True)


def test_same_seed_gives_the_same_learning_curve_and_actions() -> None:
    losses_a, actions_a = pendulum_run(seed=3)
    losses_b, actions_b = pendulum_run(seed=3)
    losses_c, actions_c = pendulum_run(seed=4)

    assert len(losses_a) == 300 and losses_a[-1]
    assert losses_a == losses_b
    assert np.array_equal(actions_a, actions_b)
    assert losses_a[-1] != losses_c[-1]
    assert not np.array_equal(actions_a, actions_c)


def test_actor_q_mean_reads_the_critics_less_pessimistically_and_changes_only_the_actor() -> None:
    batch = random_batch(32, 4)
    losses = {}
    for actor_q in ("min", "mean"):
        agent = SAC(dataclasses.replace(SMALL, actor_q=actor_q), obs_dim=4, action_dim=1)
        losses[actor_q] = agent.update(batch)
    # Same weights, batch and noise: the critics' step is the same; the actor's objective
    # -(Q - alpha log pi) is lower with the mean of two different critics than with their min.
    assert losses["min"]["critic_loss"] == losses["mean"]["critic_loss"]
    assert losses["mean"]["actor_loss"] < losses["min"]["actor_loss"]


def fleet_weights_after_updates(updates: int) -> torch.Tensor:
    config = SACConfig(env_type="portfolio", hidden_sizes=(64, 64), seed=5, device="cpu")
    agent = SAC(config, obs_dim=12, action_dim=1, n_agents=8)
    buffer = ReplayBuffer(4_096, 12, 1)
    rng = np.random.default_rng(5)
    for _ in range(64):  # 8 symbols per step: each batch holds every symbol many times
        buffer.add(
            rng.normal(size=(8, 12)), rng.uniform(-1, 1, (8, 1)), rng.normal(size=8),
            rng.normal(size=(8, 12)), np.zeros(8), np.zeros(8), np.arange(8),
        )  # fmt: skip
    for _ in range(updates):
        agent.update(buffer.sample(256, agent.generator))
    return torch.cat([p.detach().flatten() for p in agent.actor.parameters()])


def test_fleet_updates_are_the_same_on_two_threads() -> None:
    """The fleet's heads are gathered per replay row; the gather's backward must add the
    rows' gradients in the same order in every run, whatever the threads do."""
    torch.set_num_threads(2)  # the autouse fixture restores its own setting afterwards
    first = fleet_weights_after_updates(100)
    second = fleet_weights_after_updates(100)
    assert torch.equal(first, second)


def test_smoke_training_on_the_continuous_trading_env() -> None:
    env = ContinuousTradingEnv(EnvConfig(episode_length=50))
    config = dataclasses.replace(SMALL, total_timesteps=200, seed=1)

    result = train(env, config, eval_episodes=2)

    assert result.steps == 200
    assert len(result.episode_returns) == 4
    assert result.agent.updates == 150
    assert all(math.isfinite(v) for v in result.agent.last_losses.values())
    assert result.final_return is not None and math.isfinite(result.final_return)


def test_smoke_training_of_a_fleet_on_the_portfolio_env() -> None:
    env = PortfolioTradingEnv(EnvConfig(n_symbols=5, steps=30))
    config = dataclasses.replace(
        SMALL, env_type="portfolio", total_timesteps=60, learning_starts=10
    )

    result = train(env, config, eval_episodes=1)

    agent = result.agent
    assert isinstance(agent.actor, FleetActor) and agent.n_agents == 5
    assert agent.updates == 50
    assert len(result.episode_returns) == 2  # 29 steps per episode
    obs, _ = env.reset(seed=0)
    assert agent.act(obs).shape == (5,)
    assert all(math.isfinite(v) for v in agent.last_losses.values())


class SymbolRewards(gym.Wrapper[Any, Any, Any, Any]):
    """Reports a per-symbol reward of NaN for every symbol."""

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "symbol_rewards": np.full(5, np.nan)}


def test_fleet_learns_from_per_symbol_rewards_when_the_env_reports_them() -> None:
    env = SymbolRewards(PortfolioTradingEnv(EnvConfig(n_symbols=5, steps=30)))
    config = dataclasses.replace(
        SMALL, env_type="portfolio", total_timesteps=20, learning_starts=10
    )

    with pytest.raises(TrainingDiverged, match="critic_loss"):  # the NaN rewards reached SAC
        train(env, config)


def test_early_stop_once_the_evaluation_reaches_the_goal() -> None:
    env = ContinuousTradingEnv(EnvConfig(episode_length=20))
    config = dataclasses.replace(SMALL, total_timesteps=200, learning_starts=10)

    result = train(env, config, eval_env=env, eval_every=25, eval_episodes=1, stop_return=-1e9)

    assert result.stopped_early
    assert result.steps == 25
    assert result.evaluations == [(25, result.final_return)]


def test_callback_returning_true_stops_training() -> None:
    result = train(gym.make("Pendulum-v1"), PENDULUM, lambda p: p.step == 7, eval_episodes=1)

    assert result.steps == 7


# ---------------------------------------------------------------- command line


def test_command_line_options_override_the_yaml_config(tmp_path: Path) -> None:
    path = tmp_path / "sac.yaml"
    path.write_text(PLAN_TEMPLATE)
    args = cli.parser().parse_args(
        ["--config", str(path), "--training.learning_rate", "1e-3",
         "--training.hidden_sizes", "[64, 64]", "--intrinsic_curiosity.enabled", "false"]
    )  # fmt: skip

    config = cli.config_of(args)

    assert config.learning_rate == 1e-3
    assert config.hidden_sizes == (64, 64)
    assert config.icm.enabled is False
    assert config.total_timesteps == 100_000  # from the file


def test_command_line_prints_the_template_and_refuses_bad_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["--template"]) == 0
    assert SACConfig.from_yaml(capsys.readouterr().out) == SACConfig()

    assert cli.main(["--training.gamma", "2"]) == 2
    assert "training.gamma must be in [0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "section"),
    [
        ("--intrinsic_curiosity.eta", "-1", "intrinsic_curiosity"),
        ("--options.timeout", "0", "options"),
        ("--rewards.window", "1", "rewards"),
        ("--her.k", "-1", "her"),
    ],
)
def test_a_bad_value_in_any_section_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, section: str
) -> None:
    assert cli.main([flag, value, "--template"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {section}: ") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_command_line_trains_and_saves_a_loadable_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pendulum.pt"

    code = cli.main(
        ["--env", "Pendulum-v1", "--out", str(out), "--action_space.low", "-2",
         "--action_space.high", "2", "--training.total_timesteps", "60",
         "--training.learning_starts", "30", "--training.hidden_sizes", "[16, 16]",
         "--training.device", "cpu", "--eval-every", "50"]
    )  # fmt: skip

    assert code == 0
    assert "step 50: eval return" in capsys.readouterr().out
    checkpoint = load_checkpoint(out)
    assert checkpoint.config.total_timesteps == 60
    assert checkpoint.metrics["steps"] == 60


# ---------------------------------------------------------------- serving


def test_sac_policy_serves_deterministic_float64_actions_of_the_agent() -> None:
    agent = SAC(SMALL, obs_dim=63, action_dim=1)
    obs = np.random.default_rng(0).normal(size=(143, 63)).astype(np.float32)
    policy: Policy = SACPolicy(agent, version="v1")

    actions = policy.act(obs)

    assert (policy.name, policy.version) == ("sac", "v1")
    assert actions.shape == (143,) and actions.dtype == np.float64
    assert np.all(np.abs(actions) <= 1.0)
    np.testing.assert_allclose(actions, agent.act(obs, deterministic=True)[:, 0], rtol=1e-6)
    assert np.array_equal(actions, policy.act(obs))


def test_fleet_policy_refuses_a_batch_of_the_wrong_number_of_symbols() -> None:
    agent = SAC(dataclasses.replace(SMALL, env_type="portfolio"), 63, 1, n_agents=143)
    policy = SACPolicy(agent, version="v1")

    assert policy.act(np.zeros((143, 63), np.float32)).shape == (143,)
    with pytest.raises(ValueError, match="serves 143 symbols, got 10 rows"):
        policy.act(np.zeros((10, 63), np.float32))


def test_policy_of_several_action_dimensions_is_refused() -> None:
    with pytest.raises(ValueError, match="2 action dimensions"):
        SACPolicy(SAC(SMALL, obs_dim=4, action_dim=2), version="v1")


def test_replay_buffer_feeds_update_directly() -> None:
    agent = SAC(SMALL, obs_dim=3, action_dim=1)
    buffer = ReplayBuffer(100, 3, 1)
    buffer.add(np.ones((40, 3)), np.zeros((40, 1)), np.ones(40), np.ones((40, 3)),
               np.zeros(40), np.ones(40))  # fmt: skip

    losses = agent.update(buffer.sample(32, agent.generator))

    assert math.isfinite(losses["critic_loss"])
