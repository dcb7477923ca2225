"""The discrete view of the continuous environments and the action-space migrator."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from core.bars import BarFrame
from rl_agents.data import BYTETHEORY, load_bars, universe
from rl_agents.envs import (
    ActionSpaceMigrator,
    ContinuousTradingEnv,
    DiscreteAction,
    EnvConfig,
    HybridActionEnv,
    PortfolioTradingEnv,
)
from rl_agents.envs.hybrid import CONTINUOUS_VALUE

ALL_ACTIONS = list(DiscreteAction)


def real_frame(n: int, steps: int = 40) -> BarFrame:
    return universe(load_bars(BYTETHEORY), n, start=20, steps=steps)


def same_step(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Equal steps; arrays (the observation, ``info["symbol_rewards"]``) compared by value."""
    return len(a) == len(b) and all(same_value(u, v) for u, v in zip(a, b, strict=True))


def same_value(u: Any, v: Any) -> bool:
    if isinstance(u, dict):
        return u.keys() == v.keys() and all(same_value(u[k], v[k]) for k in u)
    if isinstance(u, np.ndarray):
        return bool(np.array_equal(u, v))
    return bool(u == v)


def test_each_discrete_action_stands_for_its_documented_continuous_value() -> None:
    expected = {
        DiscreteAction.HOLD: 0.0,
        DiscreteAction.BUY_SMALL: 0.25,
        DiscreteAction.BUY_MEDIUM: 0.5,
        DiscreteAction.BUY_LARGE: 1.0,
        DiscreteAction.SELL_PARTIAL: -0.25,
        DiscreteAction.SELL_HALF: -0.5,
        DiscreteAction.SELL_ALL: -1.0,
    }

    assert [int(a) for a in expected] == list(range(7))
    assert {a: float(CONTINUOUS_VALUE[a]) for a in DiscreteAction} == expected
    assert ActionSpaceMigrator().to_continuous(ALL_ACTIONS).tolist() == list(expected.values())


def test_registered_hybrid_env_has_seven_discrete_actions() -> None:
    env = gym.make("tradingbot/HybridTrading-v0", config=EnvConfig(steps=30))

    assert env.action_space == spaces.Discrete(7)
    assert isinstance(env.unwrapped, ContinuousTradingEnv)
    assert env.unwrapped.frame.n_steps == 30  # the config reached the continuous env


def test_wrapped_portfolio_env_has_seven_actions_per_symbol() -> None:
    env = HybridActionEnv(PortfolioTradingEnv(frame=real_frame(4)))

    assert env.action_space == spaces.MultiDiscrete([7, 7, 7, 7])
    assert env.observation_space == env.env.observation_space


def test_hybrid_steps_equal_continuous_steps_with_the_mapped_values() -> None:
    frame = real_frame(1)
    hybrid = HybridActionEnv(ContinuousTradingEnv(frame=frame))
    continuous = ContinuousTradingEnv(frame=frame)
    hybrid.reset(seed=0)
    continuous.reset(seed=0)
    plan = [DiscreteAction.BUY_LARGE, DiscreteAction.BUY_LARGE, DiscreteAction.HOLD]
    plan += list(np.random.default_rng(2).integers(0, 7, frame.n_steps - 1 - len(plan)))

    for action in plan:
        h = hybrid.step(action)
        c = continuous.step([CONTINUOUS_VALUE[action]])
        assert same_step(h, c)
    assert continuous.engine.equity != continuous.config.rules.initial_cash  # it traded


def test_buy_large_equals_a_continuous_action_of_one() -> None:
    frame = real_frame(1)
    inner = ContinuousTradingEnv(frame=frame)
    hybrid = HybridActionEnv(inner)
    continuous = ContinuousTradingEnv(frame=frame)
    hybrid.reset(seed=0)
    continuous.reset(seed=0)

    h = hybrid.step(DiscreteAction.BUY_LARGE)
    c = continuous.step(np.array([1.0], dtype=np.float32))

    assert same_step(h, c)
    assert inner.engine.quantity[0] > 0.0
    assert inner.engine.smoothed[0] == 1.0


def test_hybrid_portfolio_steps_equal_continuous_portfolio_steps() -> None:
    frame = real_frame(3)
    hybrid = HybridActionEnv(PortfolioTradingEnv(frame=frame))
    continuous = PortfolioTradingEnv(frame=frame)
    hybrid.reset(seed=0)
    continuous.reset(seed=0)

    for actions in np.random.default_rng(5).integers(0, 7, (10, 3)):
        assert same_step(hybrid.step(actions), continuous.step(CONTINUOUS_VALUE[actions]))


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_migrator_round_trip_returns_the_discrete_action(action: DiscreteAction) -> None:
    migrator = ActionSpaceMigrator()

    assert migrator.to_discrete(migrator.to_continuous(action)) == action


def test_migrator_round_trips_a_batch() -> None:
    migrator = ActionSpaceMigrator()
    batch = np.array([[0, 1, 2], [3, 4, 5], [6, 0, 3]])

    assert np.array_equal(migrator.to_discrete(migrator.to_continuous(batch)), batch)


@pytest.mark.parametrize("value", [0.0, 0.05, -0.05, 0.0999, -0.0999])
def test_continuous_action_in_the_hold_zone_maps_to_hold(value: float) -> None:
    assert ActionSpaceMigrator().to_discrete(value) == DiscreteAction.HOLD


@pytest.mark.parametrize(
    ("value", "nearest"),
    [
        (0.2, DiscreteAction.BUY_SMALL),
        (0.3, DiscreteAction.BUY_SMALL),
        (0.6, DiscreteAction.BUY_MEDIUM),
        (0.9, DiscreteAction.BUY_LARGE),
        (-0.2, DiscreteAction.SELL_PARTIAL),
        (-0.45, DiscreteAction.SELL_HALF),
        (-0.8, DiscreteAction.SELL_ALL),
    ],
)
def test_continuous_action_outside_the_hold_zone_maps_to_the_nearest(
    value: float, nearest: DiscreteAction
) -> None:
    assert ActionSpaceMigrator().to_discrete(value) == nearest


def test_wider_hold_threshold_widens_the_hold_zone() -> None:
    migrator = ActionSpaceMigrator(hold_threshold=0.3)

    assert migrator.to_discrete([0.25, -0.25, 0.5]).tolist() == [0, 0, 2]


@pytest.mark.parametrize("invalid", [7, -1, 100, [0, 7]])
def test_invalid_discrete_action_is_refused(invalid: Any) -> None:
    with pytest.raises(ValueError, match="0..6"):
        ActionSpaceMigrator().to_continuous(invalid)


def test_hybrid_env_refuses_an_invalid_discrete_action() -> None:
    env = HybridActionEnv(ContinuousTradingEnv(frame=real_frame(1)))
    env.reset(seed=0)

    with pytest.raises(ValueError, match="0..6"):
        env.step(7)


def test_wrapping_an_env_without_a_box_action_space_is_refused() -> None:
    discrete = HybridActionEnv(ContinuousTradingEnv(frame=real_frame(1)))

    with pytest.raises(TypeError, match="Box"):
        HybridActionEnv(discrete)


@pytest.mark.parametrize(("value", "expected"), [(0.11, "BUY_SMALL"), (-0.12, "SELL_PARTIAL")])
def test_action_just_outside_the_hold_zone_maps_to_a_trade_not_hold(
    value: float, expected: str
) -> None:
    assert ActionSpaceMigrator().to_discrete(value) == DiscreteAction[expected]


def test_non_integer_discrete_action_is_refused() -> None:
    with pytest.raises(ValueError, match="integers in 0..6"):
        ActionSpaceMigrator().to_continuous(2.5)
