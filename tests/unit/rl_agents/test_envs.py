"""The gymnasium environments: API conformance, seeding, episode ends, the rules, bad input."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import pytest
from gymnasium.utils.env_checker import check_env

from core.bars import BarDataError, BarFrame
from core.execution import ClipReason, SkipReason
from core.features import ACCOUNT_FEATURES, N_BAR_FEATURES
from core.rules import TradingRules
from rl_agents.data import BYTETHEORY, load_bars, universe
from rl_agents.envs import (
    ContinuousTradingEnv,
    EnvConfig,
    EnvDataError,
    PortfolioTradingEnv,
    equity_change,
)
from rl_agents.policies import ProbePolicy

REPO = Path(__file__).resolve().parents[3]
ENV_IDS = (
    "tradingbot/ContinuousTrading-v0",
    "tradingbot/PortfolioTrading-v0",
    "tradingbot/HybridTrading-v0",
)
UNCAPPED = TradingRules(max_position_pct=1.0)
"""Default rules without the 15% position cap, so a buy spends exactly its share of cash."""
CASH = 100_000.0
DAY_NS = 86_400 * 1_000_000_000
T0_NS = 1_262_304_000 * 1_000_000_000  # 2010-01-01T00:00:00Z
Step = tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]


def bar_frame(
    closes: dict[str, list[float]],
    opens: dict[str, list[float]] | None = None,
    missing: dict[str, list[int]] | None = None,
) -> BarFrame:
    """A hand-made frame: one close (and open) per step and symbol; ``missing`` steps have no
    bar. High and low are one dollar outside the open and close; volume is 1000."""
    symbols = tuple(closes)
    close = np.array([closes[s] for s in symbols], dtype=np.float64).T
    open_px = close.copy() if opens is None else np.array([opens[s] for s in symbols]).T
    present = np.ones(close.shape, dtype=np.bool_)
    for symbol, steps in (missing or {}).items():
        present[steps, symbols.index(symbol)] = False
    open_px = np.where(present, open_px, np.nan)
    close = np.where(present, close, np.nan)
    return BarFrame(
        symbols=symbols,
        timestamps=T0_NS + DAY_NS * np.arange(close.shape[0], dtype=np.int64),
        open=open_px,
        high=np.fmax(open_px, close) + 1.0,
        low=np.fmin(open_px, close) - 1.0,
        close=close,
        volume=np.where(present, 1_000.0, np.nan),
        present=present,
        source="hand",
    )


def real_frame(n: int, *, start: int = 0, steps: int = 30) -> BarFrame:
    return universe(load_bars(BYTETHEORY), n, start=start, steps=steps)


def run_actions(env: gym.Env[Any, Any], seed: int, actions: list[Any]) -> list[Any]:
    """Everything an episode shows: the reset and each step's full return value."""
    seen: list[Any] = [env.reset(seed=seed)]
    for action in actions:
        seen.append(env.step(action))
    return seen


def assert_same_episode(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert len(x) == len(y)
        for u, v in zip(x, y, strict=True):
            assert_same_value(u, v)


def assert_same_value(u: Any, v: Any) -> None:
    """Equal values, arrays (``info["symbol_rewards"]`` among them) compared element-wise."""
    if isinstance(u, dict):
        assert u.keys() == v.keys()
        for key in u:
            assert_same_value(u[key], v[key])
    elif isinstance(u, np.ndarray):
        assert np.array_equal(u, v)
    else:
        assert u == v


# ---------------------------------------------------------------- registration and API


def test_importing_rl_agents_registers_the_three_environments() -> None:
    script = (
        "import gymnasium as gym\n"
        f"ids = {ENV_IDS!r}\n"
        "assert not any(i in gym.registry for i in ids)\n"
        "import rl_agents\n"
        "print([gym.spec(i).entry_point for i in ids])\n"
    )

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(
        [
            "rl_agents.envs:ContinuousTradingEnv",
            "rl_agents.envs:PortfolioTradingEnv",
            "rl_agents.envs:make_hybrid",
        ]
    )
    assert all(env_id in gym.registry for env_id in ENV_IDS)  # and in this process


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_registered_environment_passes_gymnasium_check_env_without_warnings(env_id: str) -> None:
    env = gym.make(env_id)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_hybrid_wrapper_itself_passes_gymnasium_check_env_without_warnings() -> None:
    # The registered hybrid's unwrapped env is the continuous one; check the wrapper too.
    env = gym.make("tradingbot/HybridTrading-v0", config=EnvConfig(steps=40))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
        check_env(env)


def test_registered_environments_accept_a_config() -> None:
    env = gym.make("tradingbot/PortfolioTrading-v0", config=EnvConfig(n_symbols=4, steps=25))

    assert env.observation_space.shape == (4, 10 * N_BAR_FEATURES + len(ACCOUNT_FEATURES))
    assert env.action_space.shape == (4,)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"window": 0}, "window"),
        ({"episode_length": 0}, "episode_length"),
        ({"ruin_fraction": 1.0}, "ruin_fraction"),
        ({"ruin_fraction": -0.1}, "ruin_fraction"),
    ],
)
def test_invalid_config_is_refused_naming_the_setting(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        EnvConfig(**kwargs)


# ---------------------------------------------------------------- seeding


def test_same_seed_and_actions_reproduce_the_episode_across_envs_and_resets() -> None:
    config = EnvConfig(episode_length=20)
    actions = list(np.random.default_rng(3).uniform(-1, 1, (20, 1)))
    first, second = ContinuousTradingEnv(config), ContinuousTradingEnv(config)

    a = run_actions(first, 11, actions)
    b = run_actions(second, 11, actions)
    c = run_actions(first, 11, actions)  # the same env again

    assert_same_episode(a, b)
    assert_same_episode(a, c)
    assert any(step[1] != 0.0 for step in a[1:])  # it traded: a real comparison


def test_same_seed_reproduces_a_portfolio_episode() -> None:
    config = EnvConfig(episode_length=15)
    frame = real_frame(5, steps=60)
    actions = list(np.random.default_rng(4).uniform(-1, 1, (15, 5)))

    a = run_actions(PortfolioTradingEnv(config, frame), 5, actions)
    b = run_actions(PortfolioTradingEnv(config, frame), 5, actions)

    assert_same_episode(a, b)


def test_random_start_of_a_short_episode_is_drawn_from_the_seed() -> None:
    env = ContinuousTradingEnv(EnvConfig(episode_length=20))

    starts = [env.reset(seed=s)[1]["step"] for s in range(5)]
    again = [env.reset(seed=s)[1]["step"] for s in range(5)]

    assert starts == again
    assert len(set(starts)) > 1
    assert all(0 <= s <= env.engine.last_step - 20 for s in starts)


def test_episode_without_length_starts_at_the_first_bar() -> None:
    env = ContinuousTradingEnv(frame=real_frame(1))

    assert [env.reset(seed=s)[1]["step"] for s in range(3)] == [0, 0, 0]


def test_start_option_picks_the_first_timestamp() -> None:
    env = ContinuousTradingEnv(EnvConfig(episode_length=5), frame=real_frame(1))

    _, info = env.reset(seed=0, options={"start": 7})

    assert info["step"] == 7
    assert env.engine.end == 12


# ---------------------------------------------------------------- episode ends


def test_frame_of_t_timestamps_runs_t_minus_1_steps_and_then_truncates() -> None:
    env = ContinuousTradingEnv(frame=real_frame(1, steps=12))
    env.reset(seed=0)

    ends = [env.step([0.3])[2:4] for _ in range(11)]

    assert ends[:-1] == [(False, False)] * 10
    assert ends[-1] == (False, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step([0.0])


def test_episode_length_truncates_after_that_many_steps() -> None:
    env = ContinuousTradingEnv(EnvConfig(episode_length=3), frame=real_frame(1))
    env.reset(seed=1)

    truncated = [env.step([0.0])[3] for _ in range(3)]

    assert truncated == [False, False, True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step([0.0])


def test_reset_after_the_end_starts_a_new_episode() -> None:
    env = ContinuousTradingEnv(frame=real_frame(1, steps=3))
    env.reset(seed=0)
    env.step([1.0])
    env.step([1.0])

    _, info = env.reset(seed=0)

    assert info == {"equity": CASH, "cash": CASH, "step": 0}
    assert env.step([0.0])[3] is False


def crash_frame() -> BarFrame:
    return bar_frame({"X": [100.0, 100.0, 10.0, 10.0, 10.0]})


def test_equity_below_the_ruin_fraction_terminates_the_episode() -> None:
    env = ContinuousTradingEnv(EnvConfig(rules=UNCAPPED, ruin_fraction=0.9), frame=crash_frame())
    env.reset(seed=0)

    first = env.step([1.0])  # all cash into X at the open of step 1 (100)
    second = env.step([1.0])  # X closes at 10 on step 2: equity about 10% of the cash

    assert first[2:4] == (False, False)
    assert second[2:4] == (True, False)
    assert second[4]["equity"] < 0.9 * CASH


def test_same_crash_above_the_default_ruin_fraction_does_not_terminate() -> None:
    env = ContinuousTradingEnv(EnvConfig(rules=UNCAPPED), frame=crash_frame())
    env.reset(seed=0)
    env.step([1.0])

    assert env.step([1.0])[2] is False


# ---------------------------------------------------------------- observations


def test_continuous_observation_is_float32_window_features_plus_account() -> None:
    env = ContinuousTradingEnv(EnvConfig(window=4), frame=real_frame(1))

    obs, _ = env.reset(seed=0)

    assert obs.shape == (4 * N_BAR_FEATURES + 3,)
    assert env.observation_space.shape == obs.shape
    assert obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert obs[-3:].tolist() == [0.0, 1.0, 0.0]  # no position, all cash, nothing unrealised


def test_portfolio_observation_has_one_row_per_symbol() -> None:
    env = PortfolioTradingEnv(EnvConfig(window=4), frame=real_frame(3))

    obs, _ = env.reset(seed=0)

    assert obs.shape == (3, 4 * N_BAR_FEATURES + 3)
    assert obs.dtype == np.float32
    assert env.observation_space.contains(obs)


def gappy_real_frame() -> BarFrame:
    """Real bars of a complete symbol, one with gaps (AAPL) and two listed for part of the
    year only (QEP starts late, WYE stops early)."""
    frame = load_bars(BYTETHEORY).select(["A", "AAPL", "QEP", "WYE"])
    return frame.window(0, frame.n_steps)


def test_whole_episode_on_real_data_with_missing_bars_has_no_nan() -> None:
    frame = gappy_real_frame()
    assert not frame.present.all()
    env = PortfolioTradingEnv(EnvConfig(rules=TradingRules(max_position_pct=0.5)), frame)
    policy = ProbePolicy()
    obs, _ = env.reset(seed=0)
    rewards, truncated, fills = [], False, 0

    while not truncated:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        assert obs.dtype == np.float32
        assert env.observation_space.contains(obs)  # in [-5, 5], so no NaN
        assert not terminated
        rewards.append(reward)
        fills += info["fills"]

    assert len(rewards) == frame.n_steps - 1
    assert np.isfinite(rewards).all()
    assert fills > 0
    assert math.isfinite(env.engine.equity)


def test_hand_frame_with_missing_bars_gives_finite_observations() -> None:
    frame = bar_frame(
        {"X": [10.0, 11.0, 12.0, 11.0, 10.0, 12.0], "Y": [20.0, 21.0, 22.0, 20.0, 21.0, 22.0]},
        missing={"Y": [0, 2, 3]},
    )
    env = PortfolioTradingEnv(EnvConfig(window=3, rules=UNCAPPED), frame)
    observations = [env.reset(seed=0)[0]]

    for _ in range(frame.n_steps - 1):
        observations.append(env.step([0.5, 0.5])[0])

    assert all(env.observation_space.contains(o) for o in observations)
    assert env.engine.position[1] > 0.0  # Y was bought once it had bars


# ---------------------------------------------------------------- the trading rules


def one_symbol_frame() -> BarFrame:
    return bar_frame(
        {"X": [100.0, 51.0, 50.0, 52.0, 48.0]},
        opens={"X": [100.0, 50.0, 52.0, 51.0, 49.0]},
    )


def test_buy_fills_at_next_open_with_slippage_and_fee_and_rewards_log_equity_change() -> None:
    env = ContinuousTradingEnv(EnvConfig(rules=UNCAPPED, window=2), frame=one_symbol_frame())
    env.reset(seed=0)

    obs, reward, _, _, info = env.step([0.6])  # first action: smoothed 0.6

    # Buys at open 50 * 1.0005 = 50.025, spending 0.6 * 100_000 with the fee (0.001).
    notional = 60_000.0 / 1.001
    quantity = notional / 50.025
    cash = CASH - notional - 0.001 * notional
    equity = cash + quantity * 51.0  # marked at the close of step 1
    engine = env.engine
    assert engine.smoothed[0] == pytest.approx(0.6)
    assert engine.price[0] == pytest.approx(50.025)
    assert engine.quantity[0] == pytest.approx(quantity)
    assert engine.fee[0] == pytest.approx(0.001 * notional)
    assert cash == pytest.approx(40_000.0)
    assert info["cash"] == pytest.approx(cash)
    assert info["equity"] == pytest.approx(equity)
    assert info["step"] == 1
    assert reward == pytest.approx(math.log(equity / CASH))
    assert obs[-3:] == pytest.approx(
        [quantity * 51.0 / equity, cash / equity, quantity * 51.0 / 60_000.0 - 1.0], rel=1e-6
    )


def test_second_action_is_smoothed_with_the_first() -> None:
    env = ContinuousTradingEnv(EnvConfig(rules=UNCAPPED, window=2), frame=one_symbol_frame())
    env.reset(seed=0)
    first = env.step([0.6])[4]

    _, reward, _, _, info = env.step([0.4])  # smoothed (0.6 + 0.4) / 2 = 0.5

    # Half the remaining cash at 52 * 1.0005, marked at the close 50.
    notional = 0.5 * first["cash"] / 1.001
    held = env.engine.position[0]
    assert env.engine.smoothed[0] == pytest.approx(0.5)
    assert env.engine.quantity[0] == pytest.approx(notional / (52.0 * 1.0005))
    assert info["cash"] == pytest.approx(0.5 * first["cash"])
    assert info["equity"] == pytest.approx(info["cash"] + held * 50.0)
    assert reward == pytest.approx(math.log(info["equity"] / first["equity"]))


def test_buy_through_the_env_is_capped_at_the_rules_position_limit() -> None:
    env = ContinuousTradingEnv(EnvConfig(window=2), frame=one_symbol_frame())
    env.reset(seed=0)

    env.step([1.0])

    # Default cap: 15% of the equity at the open (100_000), 15_000 / 50 shares.
    assert env.engine.quantity[0] == pytest.approx(300.0)
    assert env.engine.clip[0] == ClipReason.POSITION_CAP


def test_symbol_without_a_bar_at_the_fill_step_does_not_trade() -> None:
    frame = bar_frame(
        {"X": [10.0, 11.0, 12.0, 13.0], "Y": [20.0, 21.0, 22.0, 23.0]}, missing={"Y": [1]}
    )
    env = PortfolioTradingEnv(EnvConfig(window=2, rules=UNCAPPED), frame)
    env.reset(seed=0)

    _, reward, _, _, info = env.step([0.0, 0.6])

    assert env.engine.skip[1] == SkipReason.NO_BAR
    assert env.engine.quantity[1] == 0.0
    assert info["cash"] == CASH
    assert info["fills"] == 0
    assert reward == 0.0


def test_symbol_without_a_bar_at_the_decision_step_holds() -> None:
    frame = bar_frame(
        {"X": [10.0, 11.0, 12.0, 13.0], "Y": [20.0, 21.0, 22.0, 23.0]}, missing={"Y": [1]}
    )
    env = PortfolioTradingEnv(EnvConfig(window=2, rules=UNCAPPED), frame)
    env.reset(seed=0)
    env.step([0.0, 0.0])

    _, _, _, _, info = env.step([0.0, 0.6])  # Y has no bar at step 1, where it decides

    assert env.engine.smoothed[1] == 0.0
    assert env.engine.skip[1] == SkipReason.NONE
    assert info["fills"] == 0


def test_sell_without_a_position_does_nothing() -> None:
    env = ContinuousTradingEnv(EnvConfig(window=2), frame=one_symbol_frame())
    env.reset(seed=0)

    _, reward, _, _, info = env.step([-0.6])

    assert env.engine.skip[0] == SkipReason.NO_POSITION
    assert env.engine.quantity[0] == 0.0
    assert info["cash"] == CASH
    assert info["equity"] == CASH
    assert reward == 0.0


def test_sell_after_a_buy_realises_the_position() -> None:
    env = ContinuousTradingEnv(
        EnvConfig(window=2, rules=TradingRules(max_position_pct=1.0, smoothing_window=1)),
        frame=one_symbol_frame(),
    )
    env.reset(seed=0)
    env.step([0.5])
    held = env.engine.position[0]

    env.step([-1.0])  # sells everything at 52 * 0.9995

    assert env.engine.quantity[0] == pytest.approx(-held)
    assert env.engine.price[0] == pytest.approx(52.0 * 0.9995)
    assert env.engine.position[0] == 0.0


# ---------------------------------------------------------------- per-symbol rewards


def test_symbol_rewards_sum_to_the_portfolio_simple_return_over_a_random_episode() -> None:
    frame = gappy_real_frame()  # missing bars too: a symbol never held has no close yet
    env = PortfolioTradingEnv(EnvConfig(rules=TradingRules(max_position_pct=0.5)), frame)
    actions = np.random.default_rng(5).uniform(-1, 1, (frame.n_steps - 1, frame.n_symbols))
    _, info = env.reset(seed=0)
    previous, shares, returns = info["equity"], [], []

    for action in actions:
        _, reward, _, _, info = env.step(action)
        rewards = info["symbol_rewards"]
        assert rewards.shape == (frame.n_symbols,)
        assert reward == pytest.approx(math.log(info["equity"] / previous))  # default unchanged
        shares.append(rewards.sum())
        returns.append(info["equity"] / previous - 1.0)
        previous = info["equity"]

    assert np.count_nonzero(returns) > frame.n_steps // 2  # it traded and held positions
    np.testing.assert_allclose(shares, returns, rtol=1e-9, atol=1e-15)


def test_symbol_reward_is_its_own_fill_and_mark_to_market() -> None:
    frame = bar_frame({"X": [10.0, 11.0, 12.0, 13.0], "Y": [20.0, 19.0, 18.0, 17.0]})
    rules = TradingRules(max_position_pct=1.0, smoothing_window=1)  # no smoothing, no cap
    env = PortfolioTradingEnv(EnvConfig(window=2, rules=rules), frame)
    env.reset(seed=0)

    _, _, _, _, first = env.step([0.5, 0.0])  # X buys at the open of step 1; Y holds
    engine = env.engine
    bought, notional, fee = engine.quantity[0], engine.notional[0], engine.fee[0]
    _, _, _, _, second = env.step([0.0, 0.0])  # X held from the close 11 to the close 12

    assert bought > 0.0
    assert first["symbol_rewards"][0] == pytest.approx((bought * 11.0 - notional - fee) / CASH)
    assert second["symbol_rewards"][0] == pytest.approx(bought * 1.0 / first["equity"])
    assert first["symbol_rewards"][1] == second["symbol_rewards"][1] == 0.0  # Y never traded


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_is_refused(bad: float) -> None:
    env = ContinuousTradingEnv(frame=real_frame(1))
    env.reset(seed=0)

    with pytest.raises(ValueError, match="finite"):
        env.step([bad])


def test_refused_non_finite_action_leaves_the_episode_untouched() -> None:
    frame = real_frame(2)
    env, fresh = PortfolioTradingEnv(frame=frame), PortfolioTradingEnv(frame=frame)
    env.reset(seed=0)
    fresh.reset(seed=0)

    with pytest.raises(ValueError, match="finite"):
        env.step([0.5, np.nan])  # the first symbol's 0.5 must not enter its smoothing

    assert_same_episode([env.step([0.0, 0.0])], [fresh.step([0.0, 0.0])])


def test_continuous_action_of_the_wrong_size_is_refused_naming_the_count() -> None:
    env = ContinuousTradingEnv(frame=real_frame(1))
    env.reset(seed=0)

    with pytest.raises(ValueError, match="expected 1 action"):
        env.step([0.1, 0.2])


def test_portfolio_action_of_the_wrong_size_is_refused_naming_the_count() -> None:
    env = PortfolioTradingEnv(frame=real_frame(3))
    env.reset(seed=0)

    with pytest.raises(ValueError, match="expected 3 action"):
        env.step([0.1, 0.2])


def test_single_action_of_any_shape_with_one_value_is_accepted() -> None:
    env = ContinuousTradingEnv(frame=real_frame(1))
    env.reset(seed=0)

    for action in (0.5, [0.5], [[0.5]], np.float32(0.5)):
        env.step(action)


@pytest.mark.parametrize(("outside", "edge"), [(3.0, 1.0), (-3.0, -1.0)])
def test_out_of_range_action_is_clipped_to_the_edge(outside: float, edge: float) -> None:
    config = EnvConfig(rules=UNCAPPED)
    frame = real_frame(1)
    actions = [[0.5], [outside], [outside], [0.0]]

    clipped = run_actions(ContinuousTradingEnv(config, frame), 0, actions)
    expected = run_actions(ContinuousTradingEnv(config, frame), 0, [[0.5], [edge], [edge], [0.0]])

    assert_same_episode(clipped, expected)


def replaced(frame: BarFrame, **arrays: Any) -> BarFrame:
    return dataclasses.replace(frame, **arrays)


def two_symbol_frame() -> BarFrame:
    return bar_frame({"X": [10.0, 11.0, 12.0, 13.0], "Y": [20.0, 21.0, 22.0, 23.0]})


def with_value(array: npt.NDArray[Any], step: int, column: int, value: float) -> npt.NDArray[Any]:
    out = array.copy()
    out[step, column] = value
    return out


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("close", np.nan, "Y at step 2: a price is NaN"),
        ("open", np.inf, "Y at step 2: a price is NaN, infinite"),
        ("high", 5.0, "Y at step 2: high is below low"),
        ("volume", -1.0, "Y at step 2: volume is NaN, infinite or negative"),
    ],
)
def test_frame_with_a_bad_present_bar_is_refused_naming_symbol_and_step(
    field: str, value: float, problem: str
) -> None:
    frame = two_symbol_frame()
    bad = replaced(frame, **{field: with_value(getattr(frame, field), 2, 1, value)})

    with pytest.raises(BarDataError, match=problem):
        PortfolioTradingEnv(frame=bad)


def test_bad_values_at_a_missing_bar_are_ignored() -> None:
    frame = bar_frame({"X": [10.0, 11.0, 12.0], "Y": [20.0, 21.0, 22.0]}, missing={"Y": [1]})
    assert np.isnan(frame.close[1, 1])

    env = PortfolioTradingEnv(frame=replaced(frame, volume=with_value(frame.volume, 1, 1, -1.0)))

    assert env.engine.n == 2


@pytest.mark.parametrize("stamps", [[0, 1, 1, 3], [0, 2, 1, 3]])
def test_frame_with_non_increasing_timestamps_is_refused(stamps: list[int]) -> None:
    frame = two_symbol_frame()
    bad = replaced(frame, timestamps=T0_NS + DAY_NS * np.array(stamps, dtype=np.int64))

    with pytest.raises(BarDataError, match="timestamp at step 2 is not after step 1"):
        ContinuousTradingEnv(frame=bad.select(["X"]))


def test_frame_of_one_timestamp_is_refused() -> None:
    with pytest.raises(EnvDataError, match="at least 2 timestamps"):
        ContinuousTradingEnv(frame=bar_frame({"X": [10.0]}))


def test_frame_with_a_timestamp_without_any_bar_is_refused() -> None:
    frame = bar_frame({"X": [10.0, 11.0, 12.0], "Y": [20.0, 21.0, 22.0]}, missing={"X": [1]})

    with pytest.raises(EnvDataError, match="without any bar"):
        PortfolioTradingEnv(frame=frame.select(["X"]))


def test_continuous_env_refuses_a_frame_of_several_symbols() -> None:
    with pytest.raises(ValueError, match="one symbol, got 2"):
        ContinuousTradingEnv(frame=two_symbol_frame())


# ---------------------------------------------------------------- one engine, two views


def test_one_symbol_portfolio_env_agrees_with_the_continuous_env() -> None:
    frame = real_frame(1, start=50, steps=40)
    config = EnvConfig(window=5)
    portfolio, continuous = PortfolioTradingEnv(config, frame), ContinuousTradingEnv(config, frame)
    p_obs, _ = portfolio.reset(seed=0)
    c_obs, _ = continuous.reset(seed=0)
    assert np.array_equal(p_obs[0], c_obs)

    for action in np.random.default_rng(8).uniform(-1, 1, (39, 1)):
        p = portfolio.step(action)
        c = continuous.step(action)
        assert np.array_equal(p[0][0], c[0])
        assert p[1:4] == c[1:4]
        assert (p[4]["equity"], p[4]["cash"]) == (c[4]["equity"], c[4]["cash"])
    assert continuous.engine.equity != CASH  # it traded


# ---------------------------------------------------------------- rewards


def test_equity_change_reward_gives_simple_returns() -> None:
    env = ContinuousTradingEnv(EnvConfig(reward=equity_change), frame=real_frame(1))
    _, info = env.reset(seed=0)
    previous = info["equity"]

    for action in ([1.0], [1.0], [0.0], [-1.0]):
        _, reward, _, _, info = env.step(action)
        assert reward == info["equity"] / previous - 1.0
        previous = info["equity"]


def test_custom_reward_is_called_with_previous_and_current_equity() -> None:
    calls: list[tuple[float, float]] = []

    def reward(previous: float, equity: float) -> float:
        calls.append((previous, equity))
        return 42.0

    env = ContinuousTradingEnv(EnvConfig(reward=reward), frame=real_frame(1))
    env.reset(seed=0)

    results: list[Step] = [env.step([1.0]), env.step([0.0])]

    equities = [r[4]["equity"] for r in results]
    assert calls == [(CASH, equities[0]), (equities[0], equities[1])]
    assert [r[1] for r in results] == [42.0, 42.0]


def test_lambda_reward_replaces_the_default_reward() -> None:
    env = ContinuousTradingEnv(EnvConfig(reward=lambda p, e: e - p), frame=real_frame(1))
    env.reset(seed=0)

    _, reward, _, _, info = env.step([1.0])

    assert reward == info["equity"] - CASH


def test_stepping_after_a_ruin_termination_asks_for_a_reset() -> None:
    env = ContinuousTradingEnv(EnvConfig(rules=UNCAPPED, ruin_fraction=0.9), frame=crash_frame())
    env.reset()
    terminated = False
    while not terminated:
        _, _, terminated, truncated, _ = env.step(np.array([1.0], dtype=np.float32))
        assert not truncated

    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.0], dtype=np.float32))
