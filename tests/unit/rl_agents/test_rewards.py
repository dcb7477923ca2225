"""Phase C's reward engineering: the objectives, the regime weights, the hacking check, the
wrapper on the real envs, the config's YAML and a short training run with it switched on."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import pytest

import rl_agents  # noqa: F401 - registers the trading environments
from core.bars import BarFrame
from core.rules import TradingRules
from rl_agents.checkpoints import load_checkpoint
from rl_agents.envs import ContinuousTradingEnv, EnvConfig, PortfolioTradingEnv
from rl_agents.rewards import OBJECTIVES, RewardConfig, report, serving_policy, wrap_env
from rl_agents.rewards import objectives as obj
from rl_agents.rewards.hacking import HackingMonitor
from rl_agents.rewards.market import market_stats
from rl_agents.rewards.weights import WeightTracker, regime_weights
from rl_agents.sac import __main__ as cli
from rl_agents.sac.config import SACConfig

FloatArray = npt.NDArray[np.float64]
DAY_NS = 86_400 * 1_000_000_000
T0_NS = 1_262_304_000 * 1_000_000_000  # 2010-01-01T00:00:00Z
ONLY_PROFIT = RewardConfig(
    enabled=True, risk_weight=0.0, activity_weight=0.0, timing_weight=0.0,
    exploration_weight=0.0, potential_weight=0.0,
)  # fmt: skip
"""The shaper with every objective but profit switched off."""
STEADY = RewardConfig(enabled=True, adaptive=False)
"""Fixed weights: 0.40, 0.25, 0.15, 0.10, 0.10."""


def bar_frame(closes: FloatArray) -> BarFrame:
    """A hand-made frame ``[T, n]`` of closes; each bar opens at the previous close."""
    close = np.asarray(closes, dtype=np.float64).reshape(len(closes), -1)
    open_px = np.vstack([close[:1], close[:-1]])
    return BarFrame(
        symbols=tuple(f"S{i}" for i in range(close.shape[1])),
        timestamps=T0_NS + DAY_NS * np.arange(close.shape[0], dtype=np.int64),
        open=open_px,
        high=np.fmax(open_px, close) * 1.001,
        low=np.fmin(open_px, close) * 0.999,
        close=close,
        volume=np.full(close.shape, 1_000.0),
        present=np.ones(close.shape, dtype=np.bool_),
        source="hand",
    )


def walk(steps: int, drift: float, noise: float, seed: int = 0) -> FloatArray:
    """Closes of a log-normal walk from 100: ``drift`` and ``noise`` per step."""
    steps_ = np.random.default_rng(seed).normal(drift, noise, steps - 1)
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(steps_)]))


def single(closes: FloatArray, rules: TradingRules | None = None) -> ContinuousTradingEnv:
    config = EnvConfig(window=2, rules=rules or TradingRules(smoothing_window=1))
    return ContinuousTradingEnv(config, bar_frame(closes))


def run(
    env: gym.Env[Any, Any], actions: FloatArray | list[float], seed: int = 0
) -> list[dict[str, Any]]:
    """Each step's info (with the reward under ``"reward"``), until the actions or the episode
    run out."""
    env.reset(seed=seed)
    infos = []
    for action in actions:
        _, reward, terminated, truncated, info = env.step(np.asarray(action, np.float32))
        infos.append({**info, "reward": reward})
        if terminated or truncated:
            break
    return infos


# ---------------------------------------------------------------- the objectives, by hand


def test_tent_pays_most_at_the_target_and_least_at_never_or_always() -> None:
    shares = np.array([0.0, 0.1, 0.2, 0.6, 1.0])

    np.testing.assert_allclose(obj.tent(shares, 0.2), [-1.0, 0.0, 1.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(obj.saturating(np.array([0.0, 0.25, 0.5, 0.9]), 0.5), [-1, 0, 1, 1])


def test_drawdown_within_its_limit_costs_nothing_and_past_it_is_charged_to_the_losers() -> None:
    returns = np.array([-0.02, 0.01, -0.01])
    no_var = np.zeros(3)

    within = obj.risk(returns, no_var, deepening=0.0, var_limit=0.02)
    past = obj.risk(returns, no_var, deepening=0.006, var_limit=0.02)

    np.testing.assert_array_equal(within, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(past, [-0.004, 0.0, -0.002])
    assert obj.drawdown_excess(94.0, 100.0, 0.05) == pytest.approx(0.01)
    assert obj.drawdown_excess(96.0, 100.0, 0.05) == 0.0


def test_book_var_counts_correlation_and_its_parts_add_up() -> None:
    r = np.random.default_rng(0).normal(0.0, 0.02, 40)
    together = np.stack([r, r], axis=1)
    hedged = np.stack([r, -r], axis=1)
    exposure = np.array([0.3, 0.2])
    one = obj.VAR_Z * np.std(r, ddof=1)

    var, parts = obj.book_var(exposure, together)
    hedged_var, _ = obj.book_var(exposure, hedged)

    assert var == pytest.approx(one * 0.5)  # perfectly correlated: the positions' VaRs add
    np.testing.assert_allclose(parts, one * exposure)
    assert hedged_var == pytest.approx(one * 0.1)  # 0.3 long against 0.2 of its mirror
    assert parts.sum() == pytest.approx(var)


def test_var_beyond_the_limit_is_charged_by_each_positions_part() -> None:
    parts = np.array([0.015, 0.010, -0.001])

    charged = obj.risk(np.zeros(3), parts, deepening=0.0, var_limit=0.02)

    assert charged.sum() == pytest.approx(-(parts.sum() - 0.02))
    np.testing.assert_allclose(charged, [-0.0024, -0.0016, 0.0])  # the hedge pays nothing


def test_fill_quality_is_one_for_a_buy_at_the_low_and_a_sell_at_the_high() -> None:
    quantity = np.array([5.0, 5.0, -5.0, -5.0, 0.0])
    price = np.array([90.0, 110.0, 110.0, 95.0, 100.0])
    low, high = np.full(5, 90.0), np.full(5, 110.0)

    quality = obj.fill_quality(quantity, price, low, high)

    np.testing.assert_allclose(quality[:4], [1.0, 0.0, 1.0, 0.25])
    assert np.isnan(quality[4])
    np.testing.assert_allclose(obj.timing(quality, np.full(5, 2.0)), [2.0, -2.0, 2.0, -1.0, 0.0])


def test_diversity_is_zero_for_one_repeated_action_and_one_for_all_different() -> None:
    same = np.bincount(obj.action_bins(np.full(20, 0.33)), minlength=20)
    spread = np.bincount(obj.action_bins(np.linspace(-0.99, 0.99, 20)), minlength=20)
    one = np.bincount(obj.action_bins(np.array([0.5])), minlength=20)

    d = obj.diversity(np.stack([same, spread, one]))

    np.testing.assert_allclose(d[:2], [0.0, 1.0])
    assert np.isnan(d[2])  # one action says nothing yet
    np.testing.assert_allclose(obj.exploration(d, np.full(3, 3.0), 0.5), [-3.0, 3.0, 0.0])


def test_rolling_statistics_match_a_plain_loop_over_the_closes() -> None:
    closes = np.stack([walk(50, 0.001, 0.02, seed=1), walk(50, -0.002, 0.01, seed=2)], axis=1)
    window = 10

    stats = market_stats(closes, np.ones(closes.shape, dtype=bool), window, 1.5)

    logs = np.log(closes)
    for t in (2, 5, 10, 30, 49):
        returns = np.diff(logs[max(0, t - window) : t + 1], axis=0)
        np.testing.assert_allclose(stats.volatility[t], returns.std(axis=0, ddof=1), rtol=1e-9)
        start = max(0, t - window)
        np.testing.assert_allclose(stats.trend[t], (logs[t] - logs[start]) / window, rtol=1e-9)
        recent = closes[max(0, t - window + 1) : t + 1]
        np.testing.assert_array_equal(stats.low[t], recent.min(axis=0))
        np.testing.assert_array_equal(stats.high[t], recent.max(axis=0))


# ---------------------------------------------------------------- the regime weights


def test_high_volatility_boosts_risk_and_damps_profit_renormalised() -> None:
    base = np.array(STEADY.weights())

    calm = regime_weights(base, False, 1.5, 0.8)
    stormy = regime_weights(base, True, 1.5, 0.8)

    np.testing.assert_allclose(calm, base)
    assert stormy.sum() == pytest.approx(1.0)
    assert stormy[1] / stormy[0] == pytest.approx((0.25 * 1.5) / (0.40 * 0.8))
    np.testing.assert_allclose(stormy[2:] / calm[2:], stormy[2] / calm[2])  # the rest in step


def stormy_episode(steps: int = 10) -> tuple[WeightTracker, FloatArray, FloatArray, FloatArray]:
    """A tracker (rate 0.1) started at the base weights and moved ``steps`` times towards the
    high-volatility ones: (tracker, base, stormy, last weights)."""
    base = np.array(STEADY.weights())
    stormy = regime_weights(base, True, 1.5, 0.8)
    tracker = WeightTracker(rate=0.1)
    tracker.reset(base)
    weights = base
    for _ in range(steps):
        weights = tracker.step(stormy)
    return tracker, base, stormy, weights


def test_weights_move_a_share_of_the_way_and_their_spread_is_measured() -> None:
    tracker, base, stormy, weights = stormy_episode()

    np.testing.assert_allclose(weights - stormy, 0.9**10 * (base - stormy))
    history = [base + (1 - 0.9**k) * (stormy - base) for k in range(11)]
    expected = np.std(history, axis=0) / np.mean(history, axis=0)
    np.testing.assert_allclose(tracker.spread(), expected)


def test_the_largest_spread_of_a_finished_episode_outlives_the_reset() -> None:
    tracker, base, _, _ = stormy_episode()
    moved = tracker.spread()
    assert moved.max() > 0.0

    tracker.reset(base)  # a new episode that does not move
    tracker.step(base)

    np.testing.assert_array_equal(tracker.spread(), np.zeros_like(moved))
    np.testing.assert_allclose(tracker.worst_spread(), moved)
    assert tracker.episodes == 2


def test_a_volatile_spell_raises_the_risk_weight_and_fixed_weights_do_not_move() -> None:
    calm, storm = walk(80, 0.0, 0.002, seed=3), walk(40, 0.0, 0.05, seed=4)
    closes = np.concatenate([calm, calm[-1] * storm / storm[0]])
    actions = np.zeros(len(closes) - 1)

    adaptive = run(wrap_env(single(closes), RewardConfig(enabled=True)), actions)
    steady = wrap_env(single(closes), STEADY)
    fixed = run(steady, actions)

    risk = np.array([info["reward_weights"]["risk"] for info in adaptive])
    assert all(sum(info["reward_weights"].values()) == pytest.approx(1.0) for info in adaptive)
    assert risk[:70].max() == pytest.approx(0.25)
    assert risk[-1] > 0.3  # most of the way to 0.375 / 1.045
    assert {info["reward_weights"]["risk"] for info in fixed} == {0.25}
    assert report(steady)["weight_stability"] == 0.0


def test_default_weights_vary_less_than_ten_percent_over_the_bundled_episode() -> None:
    """The plan's gate on weight stability, on the default env's episode."""
    env = wrap_env(gym.make("tradingbot/ContinuousTrading-v0"), RewardConfig(enabled=True))

    infos = run(env, np.zeros(10_000))

    inner = env.unwrapped
    assert isinstance(inner, ContinuousTradingEnv)
    assert infos[-1]["step"] == inner.frame.n_steps - 1  # the whole episode
    assert 0.0 < report(env)["high_volatility_share"] < 1.0  # both regimes occurred
    stability = report(env)["weight_stability"]
    assert 0.0 < stability < 0.10
    # Training reads the report after the env's next reset: the episode still counts.
    env.reset(seed=1)
    assert report(env)["weight_stability"] == stability
    assert report(env)["risk_weight_spread"] == 0.0


# ---------------------------------------------------------------- the wrapper on trajectories


def test_holding_cash_is_charged_for_inactivity_and_a_constant_action() -> None:
    env = wrap_env(single(walk(40, 0.0, 0.01)), STEADY)

    infos = run(env, np.zeros(39))

    stats = env.shaper.stats
    for t, info in enumerate(infos):
        parts = info["reward_components"]
        unit = stats.volatility[t, 0] * 0.15
        assert parts["profit"] == parts["risk"] == parts["timing"] == parts["shaping"] == 0.0
        assert parts["activity"] == pytest.approx(0.15 * -unit)  # never trades: tent(0) = -1
        assert parts["exploration"] == pytest.approx(0.0 if t == 0 else 0.10 * -unit)
        assert info["reward"] == pytest.approx(sum(parts.values()))


def test_a_falling_book_is_charged_the_drawdown_past_its_limit_once_more() -> None:
    rules = TradingRules(smoothing_window=1, max_position_pct=1.0)
    config = dataclasses.replace(STEADY, var_limit=0.99)  # the drawdown part alone
    env = wrap_env(single(walk(40, -0.01, 0.0), rules), config)

    infos = run(env, [1.0] + [0.0] * 38)  # all in at the start, then hold

    equity = np.array([100_000.0] + [info["equity"] for info in infos])
    assert np.all(np.diff(equity) < 0.0)
    excess = max(0.0, 1.0 - equity[-1] / equity.max() - 0.05)
    risk = sum(info["reward_components"]["risk"] for info in infos)
    assert excess > 0.1
    assert risk / 0.25 == pytest.approx(-excess)


def test_buys_in_a_fall_are_well_timed_and_buys_in_a_rise_are_not() -> None:
    actions = [0.0] * 5 + [0.3, 0.0] * 10
    falling = wrap_env(single(walk(30, -0.01, 0.002)), STEADY)
    rising = wrap_env(single(walk(30, 0.01, 0.002)), STEADY)

    run(falling, actions)
    run(rising, actions)

    assert report(falling)["entry_quality"] > 0.99  # each fills at about the recent low
    assert report(rising)["entry_quality"] == 0.0  # each fills above the recent high
    assert report(falling)["timing_mean"] > 0.0 > report(rising)["timing_mean"]


def test_with_only_profit_the_shaped_reward_is_the_envs_reward() -> None:
    actions = np.random.default_rng(1).uniform(-1, 1, (100, 1))
    plain = run(gym.make("tradingbot/ContinuousTrading-v0"), actions)

    shaped = run(wrap_env(gym.make("tradingbot/ContinuousTrading-v0"), ONLY_PROFIT), actions)

    assert [s["reward"] for s in shaped] == [p["reward"] for p in plain]
    assert [s["raw_reward"] for s in shaped] == [p["reward"] for p in plain]


def test_shaped_rewards_add_up_and_the_raw_reward_is_the_envs() -> None:
    actions = np.random.default_rng(2).uniform(-1, 1, (150, 1))
    plain = run(gym.make("tradingbot/ContinuousTrading-v0"), actions)
    env = wrap_env(gym.make("tradingbot/ContinuousTrading-v0"), RewardConfig(enabled=True))

    shaped = run(env, actions)

    assert [s["raw_reward"] for s in shaped] == [p["reward"] for p in plain]
    assert [s["equity"] for s in shaped] == [p["equity"] for p in plain]
    for info in shaped:
        assert info["reward"] == pytest.approx(sum(info["reward_components"].values()), abs=1e-15)
    raw = np.abs([p["reward"] for p in plain]).mean()
    total = np.abs([s["reward"] for s in shaped]).mean()
    assert raw / 3 < total < raw * 3  # the scale of the env's reward
    moved = {k for info in shaped for k, v in info["reward_components"].items() if v != 0.0}
    assert moved >= {"profit", "activity", "timing", "exploration", "shaping"}
    assert all(info["reward_components"]["risk"] <= 0.0 for info in shaped)  # a budget


def test_portfolio_symbols_learn_from_their_own_shaped_rewards() -> None:
    def make() -> PortfolioTradingEnv:
        return PortfolioTradingEnv(EnvConfig(n_symbols=5, steps=60))

    actions = np.random.default_rng(3).uniform(-1, 1, (59, 5))
    plain = run(make(), actions)
    env = wrap_env(make(), RewardConfig(enabled=True))

    shaped = run(env, actions)

    assert len(shaped) == 59
    for p, s in zip(plain, shaped, strict=True):
        np.testing.assert_array_equal(s["raw_symbol_rewards"], p["symbol_rewards"])
        assert s["raw_reward"] == p["reward"]
        assert s["symbol_rewards"].shape == (5,) and s["symbol_rewards"].dtype == np.float64
        assert s["reward"] == pytest.approx(s["symbol_rewards"].sum(), abs=1e-15)
        assert s["reward"] == pytest.approx(sum(s["reward_components"].values()), abs=1e-15)
    assert not np.allclose(
        [s["symbol_rewards"] for s in shaped], [p["symbol_rewards"] for p in plain]
    )


def test_shaping_telescopes_to_the_last_potential_over_an_episode() -> None:
    """With gamma 1 the shaping terms of an episode sum to phi(last) - phi(first) = phi(last)."""
    config = dataclasses.replace(STEADY, potential_gamma=1.0, potential_weight=1.0)
    env = wrap_env(PortfolioTradingEnv(EnvConfig(n_symbols=5, steps=60)), config)
    actions = np.random.default_rng(4).uniform(-1, 1, (59, 5))

    infos = run(env, actions)

    total = sum(info["reward_components"]["shaping"] for info in infos)
    assert abs(env.shaper.potential.sum()) > 1e-4  # it ends holding positions
    assert total == pytest.approx(env.shaper.potential.sum(), abs=1e-12)


def test_the_same_actions_give_the_same_shaped_rewards() -> None:
    actions = np.random.default_rng(5).uniform(-1, 1, (80, 1))

    def rewards() -> list[float]:
        env = wrap_env(gym.make("tradingbot/ContinuousTrading-v0"), RewardConfig(enabled=True))
        return [info["reward"] for info in run(env, actions)]

    assert rewards() == rewards()


# ---------------------------------------------------------------- reward hacking


def test_an_objective_that_pays_while_the_return_falls_is_flagged() -> None:
    rng = np.random.default_rng(0)
    monitor = HackingMonitor(("risk", "activity", "exploration"), window=100, z=2.0)
    flags = []

    for _ in range(300):
        activity = 1e-3 + 1e-3 * rng.normal()  # pays steadily
        raw = -1e-3 + 1e-3 * rng.normal()  # while the book bleeds
        flags.append(monitor.update([0.0, activity, 1e-4 * rng.normal()], raw))

    assert all(f == () for f in flags[:99])  # not before the window is full
    assert all(f == ("activity",) for f in flags[99:])
    assert monitor.first_flagged == {"activity": 100}


def test_noise_and_rising_returns_are_not_flagged() -> None:
    rng = np.random.default_rng(1)
    rising = HackingMonitor(("activity",), window=100, z=2.0)
    noise = HackingMonitor(("activity",), window=100, z=2.0)

    for _ in range(300):
        rising.update([1e-3 + 1e-3 * rng.normal()], 1e-3 + 1e-3 * rng.normal())
        noise.update([1e-3 * rng.normal()], 1e-3 * rng.normal())

    assert rising.first_flagged == {} and noise.first_flagged == {}


def test_collecting_the_exploration_bonus_in_a_falling_market_is_reported() -> None:
    buys = np.random.default_rng(6).uniform(0.1, 1.0, 79)  # diverse buys: exploration pays
    config = dataclasses.replace(STEADY, hacking_window=30)
    falling = wrap_env(single(walk(80, -0.01, 0.005)), config)
    rising = wrap_env(single(walk(80, 0.01, 0.005)), config)

    infos = run(falling, buys)
    run(rising, buys)

    assert any("exploration" in info["reward_hacking"] for info in infos)
    assert report(falling)["exploration_hacking_steps"] > 0
    assert report(falling)["hacking_flags"] >= 1
    assert report(rising)["hacking_flags"] == 0


# ---------------------------------------------------------------- report, serving, bad input


def test_report_finds_the_shaper_under_other_wrappers_and_is_empty_without_one() -> None:
    env = wrap_env(gym.make("tradingbot/ContinuousTrading-v0"), RewardConfig(enabled=True))
    outer = gym.wrappers.RecordEpisodeStatistics(env)
    run(outer, np.random.default_rng(7).uniform(-1, 1, (20, 1)))

    metrics = report(outer)

    assert metrics["steps"] == 20
    for name in OBJECTIVES:
        assert math.isfinite(metrics[f"{name}_mean"])
        assert 0.0 < metrics[f"{name}_weight"] < 1.0
    for name in (*OBJECTIVES[1:], "shaping"):  # profit is the return itself
        assert metrics[f"{name}_hacking"] == 0.0
    assert sum(metrics[f"{n}_weight"] for n in OBJECTIVES) == pytest.approx(1.0)
    assert all(isinstance(v, float) for v in metrics.values())
    assert 0.0 < metrics["shaping_share"] < 1.0
    assert report(gym.make("tradingbot/ContinuousTrading-v0")) == {}


def test_serving_policy_is_the_trained_policy_itself() -> None:
    policy = object()

    assert serving_policy(policy, RewardConfig(enabled=True)) is policy


def test_an_env_without_a_market_engine_or_continuous_actions_is_refused() -> None:
    with pytest.raises(TypeError, match="PendulumEnv"):
        wrap_env(gym.make("Pendulum-v1"), RewardConfig(enabled=True))
    with pytest.raises(TypeError, match="raw continuous actions"):
        wrap_env(gym.make("tradingbot/HybridTrading-v0"), RewardConfig(enabled=True))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"risk_weight": -0.1}, "weights must be >= 0"),
        ({"profit_weight": 0.0, "risk_weight": 0.0, "activity_weight": 0.0,
          "timing_weight": 0.0, "exploration_weight": 0.0}, "at least one"),
        ({"potential_gamma": 1.5}, "potential_gamma must be in"),
        ({"window": 1}, "window must be >= 2"),
        ({"target_trade_frequency": 1.0}, "target_trade_frequency must be in"),
        ({"weight_rate": 0.0}, "weight_rate must be in"),
        ({"high_volatility": float("nan")}, "high_volatility must be > 0"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_with_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RewardConfig(**change)


def test_the_rewards_section_goes_through_yaml_and_the_command_line() -> None:
    config = SACConfig(rewards=RewardConfig(enabled=True, risk_weight=0.3, adaptive=False))

    text = config.to_yaml()

    assert SACConfig.from_yaml(text) == config
    assert "# Weight of the potential-based shaping" in text
    args = cli.parser().parse_args(["--rewards.enabled", "true", "--rewards.window", "30"])
    assert cli.config_of(args).rewards == RewardConfig(enabled=True, window=30)


# ---------------------------------------------------------------- training with it


@pytest.mark.parametrize(
    "env_args",
    [["--env_type", "continuous"], ["--env_type", "portfolio", "--symbols", "5"]],
)
def test_training_on_the_shaped_rewards_runs_and_records_the_section(
    env_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shaped.pt"
    quick = [
        "--training.total_timesteps", "200", "--training.learning_starts", "190",
        "--training.batch_size", "32", "--training.hidden_sizes", "[16, 16]",
        "--training.device", "cpu", "--eval-every", "0", "--no-progress",
    ]  # fmt: skip

    code = cli.main([*env_args, *quick, "--rewards.enabled", "true", "--out", str(out)])

    assert code == 0, capsys.readouterr().err
    assert load_checkpoint(out).config.rewards.enabled
    start = json.loads(out.with_suffix(".jsonl").read_text().splitlines()[0])
    assert start["config"]["rewards"]["enabled"] is True
