"""The sparse completed-trade rewards on hand-made trades, and the discrete PPO's collapse watch.

Prices are chosen by hand and the rules have no position cap and no
smoothing, so every fill's quantity, price and fee follow from the rules'
formulas: buys pay open * (1 + slippage), sells get open * (1 - slippage), and
each fill pays fee_rate of its notional.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from core.bars import BarFrame
from core.rules import TradingRules
from rl_agents.baselines.ppo import PPOBaselineConfig, main, make_training_env, train_ppo
from rl_agents.baselines.sparse import CompletedTradeReward, with_reward
from rl_agents.data import BYTETHEORY, load_bars, universe
from rl_agents.envs import ContinuousTradingEnv, EnvConfig, HybridActionEnv
from rl_agents.envs.hybrid import DiscreteAction

CASH = 100_000.0
FEE, SLIP = 0.001, 0.0005
RULES = TradingRules(max_position_pct=1.0, smoothing_window=1)
"""No cap, no smoothing: an action is the order."""
FREE = TradingRules(max_position_pct=1.0, smoothing_window=1, fee_rate=0.0, slippage_rate=0.0)
DAY_NS = 86_400 * 1_000_000_000
T0_NS = 1_262_304_000 * 1_000_000_000


def frame(opens: list[float], closes: list[float]) -> BarFrame:
    open_px = np.array(opens, dtype=np.float64)[:, None]
    close = np.array(closes, dtype=np.float64)[:, None]
    return BarFrame(
        symbols=("X",),
        timestamps=T0_NS + DAY_NS * np.arange(len(opens), dtype=np.int64),
        open=open_px,
        high=np.fmax(open_px, close) + 1.0,
        low=np.fmin(open_px, close) - 1.0,
        close=close,
        volume=np.full(close.shape, 1_000.0),
        present=np.ones(close.shape, dtype=np.bool_),
        source="hand",
    )


# Decisions at steps 0..5 fill at the opens of steps 1..6 and are marked at their closes.
OPENS = [100.0, 50.0, 55.0, 60.0, 40.0, 44.0, 45.0]
CLOSES = [100.0, 52.0, 58.0, 45.0, 42.0, 45.0, 46.0]


def env(pay_on: str = "reduce", rules: TradingRules = RULES) -> CompletedTradeReward:
    inner = ContinuousTradingEnv(EnvConfig(rules=rules, window=2), frame=frame(OPENS, CLOSES))
    wrapped = CompletedTradeReward(inner, pay_on)  # type: ignore[arg-type]
    wrapped.reset(seed=0)
    return wrapped


def run(wrapped: gym.Env[Any, Any], actions: list[float]) -> list[float]:
    return [float(wrapped.step(np.array([a], np.float32))[1]) for a in actions]


def bought(fraction: float, open_px: float, cash: float = CASH) -> tuple[float, float]:
    """Shares bought and dollars paid (notional plus fee) by buying ``fraction`` of ``cash``."""
    notional = fraction * cash / (1 + FEE)
    return notional / (open_px * (1 + SLIP)), notional * (1 + FEE)


def sold(shares: float, open_px: float) -> float:
    """Dollars received for ``shares`` at ``open_px``: notional less its fee."""
    return shares * open_px * (1 - SLIP) * (1 - FEE)


def test_buying_and_holding_earn_nothing_however_the_price_moves() -> None:
    wrapped = env()

    rewards = run(wrapped, [0.5, 0.0, 0.0])  # buy at 50, then hold through 58 and 45

    assert rewards == [0.0, 0.0, 0.0]
    assert wrapped.unwrapped.engine.position[0] > 0  # type: ignore[attr-defined]
    # the dense reward of the same steps was not zero: equity moved with the price
    dense = ContinuousTradingEnv(EnvConfig(rules=RULES, window=2), frame=frame(OPENS, CLOSES))
    dense.reset(seed=0)
    assert all(r != 0.0 for r in run(dense, [0.5, 0.0, 0.0]))


def test_a_close_pays_the_realised_pnl_of_the_trade_net_of_both_fees() -> None:
    shares, paid = bought(0.5, 50.0)

    rewards = run(env(), [0.5, 0.0, -1.0])  # buy at open 50, sell everything at open 60

    assert rewards[:2] == [0.0, 0.0]
    assert rewards[2] == pytest.approx((sold(shares, 60.0) - paid) / CASH, rel=1e-9)
    assert rewards[2] > 0


def test_a_losing_close_pays_a_negative_reward() -> None:
    shares, paid = bought(0.5, 50.0)

    rewards = run(env(), [0.5, 0.0, 0.0, -1.0])  # sell at open 40

    assert rewards[3] == pytest.approx((sold(shares, 40.0) - paid) / CASH, rel=1e-9)
    assert rewards[3] < 0


def test_a_round_trip_at_an_unchanged_price_loses_exactly_the_fees_and_slippage() -> None:
    flat = frame([100.0] * 4, [100.0] * 4)
    costly = CompletedTradeReward(ContinuousTradingEnv(EnvConfig(rules=RULES), frame=flat))
    free = CompletedTradeReward(ContinuousTradingEnv(EnvConfig(rules=FREE), frame=flat))
    costly.reset(seed=0)
    free.reset(seed=0)
    shares, paid = bought(0.5, 100.0)

    with_costs = run(costly, [0.5, -1.0])
    without = run(free, [0.5, -1.0])

    assert without == [0.0, 0.0]
    assert with_costs[1] == pytest.approx((sold(shares, 100.0) - paid) / CASH, rel=1e-9)
    # the loss is the buy's fee, the sell's fee and the slippage of both fills
    assert -with_costs[1] * CASH > FEE * 0.5 * CASH


def test_each_reduction_pays_its_share_of_the_cost_basis() -> None:
    shares, paid = bought(0.5, 50.0)

    rewards = run(env(), [0.5, -0.5, -1.0])  # sell half at 55, the rest at 60

    assert rewards[1] == pytest.approx((sold(shares / 2, 55.0) - paid / 2) / CASH, rel=1e-9)
    assert rewards[2] == pytest.approx((sold(shares / 2, 60.0) - paid / 2) / CASH, rel=1e-9)


def test_a_round_trip_reward_pays_the_whole_trade_only_when_the_position_is_closed() -> None:
    shares, paid = bought(0.5, 50.0)
    whole = sold(shares / 2, 55.0) + sold(shares / 2, 60.0) - paid

    rewards = run(env("close"), [0.5, -0.5, -1.0])

    assert rewards[:2] == [0.0, 0.0]  # the first half's sale is not a completed trade yet
    assert rewards[2] == pytest.approx(whole / CASH, rel=1e-9)
    assert sum(run(env(), [0.5, -0.5, -1.0])) == pytest.approx(rewards[2], rel=1e-9)


def test_a_position_still_open_at_the_end_of_the_episode_is_never_paid() -> None:
    wrapped = env()
    rewards = []
    done = False
    while not done:
        _, reward, terminated, truncated, _ = wrapped.step(np.array([0.5], np.float32))
        rewards.append(float(reward))
        done = terminated or truncated

    assert rewards == [0.0] * (len(OPENS) - 1)


def test_over_an_episode_that_ends_flat_the_rewards_sum_to_the_books_return() -> None:
    bars = universe(load_bars(BYTETHEORY), 1, start=20, steps=60)
    wrapped = CompletedTradeReward(ContinuousTradingEnv(EnvConfig(rules=RULES), frame=bars))
    wrapped.reset(seed=0)
    rng = np.random.default_rng(3)
    actions = [*rng.choice([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0], bars.n_steps - 2), -1.0]

    rewards = run(wrapped, actions)
    engine = wrapped.unwrapped.engine  # type: ignore[attr-defined]

    assert engine.position[0] == 0.0  # the last sell closed the book
    assert sum(rewards) == pytest.approx(engine.equity / CASH - 1.0, abs=1e-12)
    assert sum(r != 0.0 for r in rewards) < len(rewards) / 2


def test_the_discrete_view_pays_the_same_as_the_continuous_actions_it_stands_for() -> None:
    def discrete() -> gym.Env[Any, Any]:
        inner = ContinuousTradingEnv(EnvConfig(rules=RULES, window=2), frame=frame(OPENS, CLOSES))
        wrapped = with_reward(HybridActionEnv(inner), "completed-trades")
        wrapped.reset(seed=0)
        return wrapped

    steps = [DiscreteAction.BUY_MEDIUM, DiscreteAction.SELL_HALF, DiscreteAction.SELL_ALL]
    wrapped = discrete()
    rewards = [float(wrapped.step(int(a))[1]) for a in steps]

    assert rewards == pytest.approx(run(env(), [0.5, -0.5, -1.0]), rel=1e-12)


def test_an_env_without_a_market_engine_is_refused() -> None:
    with pytest.raises(TypeError, match="MarketEngine"):
        CompletedTradeReward(gym.make("CartPole-v1"))


# ---------------------------------------------------------------- the discrete baseline

TINY = PPOBaselineConfig(
    total_timesteps=256, n_symbols=2, n_envs=2, n_steps=64, n_epochs=1, net_arch=(16,)
)


def test_the_default_baseline_keeps_the_dense_log_equity_reward() -> None:
    bars = universe(load_bars(BYTETHEORY), 2, start=0, steps=40)
    config = PPOBaselineConfig(n_symbols=2, n_envs=1)
    vec = make_training_env(config, bars)
    vec.reset()
    _, reward, _, info = vec.step(np.array([DiscreteAction.BUY_LARGE]))

    assert config.reward == "log-equity"
    assert reward[0] == pytest.approx(math.log(info[0]["equity"] / CASH), rel=1e-6)
    assert "realized_pnl" not in info[0]


def test_a_baseline_trained_on_completed_trades_steps_envs_that_pay_only_sells() -> None:
    bars = universe(load_bars(BYTETHEORY), 2, start=0, steps=40)
    vec = make_training_env(dataclasses.replace(TINY, reward="completed-trades"), bars)
    vec.reset()
    buys = [vec.step(np.array([DiscreteAction.BUY_LARGE] * 2)) for _ in range(3)]
    # the default rules smooth over 3 actions: the sells fill from the second SELL_ALL on
    sells = [vec.step(np.array([DiscreteAction.SELL_ALL] * 2)) for _ in range(3)]

    assert all((step[1] == 0.0).all() for step in buys)
    for _, reward, _, infos in sells:
        assert [i["realized_pnl"] / CASH for i in infos] == pytest.approx(reward.tolist())
    assert (sells[0][1] == 0.0).all() and (sells[1][1] != 0.0).all()


def test_an_unknown_reward_is_refused_by_the_command_line_with_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--reward", "sharpe", "--total-timesteps", "64"])

    assert code == 2
    err = capsys.readouterr().err
    assert "sharpe" in err and "completed-trades" in err and "round-trips" in err


def test_the_training_monitor_watches_the_sampled_actions_of_each_env() -> None:
    model, info = train_ppo(TINY)

    assert info.pause is None  # 128 near-uniform actions per env are far above 0.20
    assert info.training_diversity is not None and info.training_diversity > 0.5


def test_a_collapse_below_the_pause_threshold_stops_training_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "paused.zip"
    argv = [
        "--out", str(out), "--total-timesteps", "1024", "--n-symbols", "2", "--n-envs", "2",
        "--n-steps", "64", "--n-epochs", "1", "--net-arch", "16",
        "--pause-below", "1",  # 50 actions of 7 values in 20 bins are always below 1
    ]  # fmt: skip

    code = main(argv)

    assert code == 3
    sidecar = json.loads(out.with_suffix(".json").read_text())
    pause = sidecar["pause"]
    # judged every 50 steps of each env from 50 actions on: the first check pauses
    assert pause["step"] == 100 and pause["actions"] == 50
    assert pause["diversity"] < pause["threshold"] == 1.0
    assert sidecar["timesteps"] < 1024  # stopped early, inside the first rollout
    assert "paused" in capsys.readouterr().err


def test_pause_below_zero_only_watches() -> None:
    _, info = train_ppo(dataclasses.replace(TINY, pause_below=0.0))

    assert info.pause is None and info.timesteps == 256
