"""Policies behind the ``Policy`` interface: the momentum baseline and the probe."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from core.actions import ActionKind, classify
from core.features import ACCOUNT_FEATURES, FEATURE_NAMES, N_BAR_FEATURES
from core.rules import TradingRules
from rl_agents.policies import MomentumPolicy, Policy, ProbePolicy, make_policy

WINDOW = 4
WIDTH = WINDOW * N_BAR_FEATURES + len(ACCOUNT_FEATURES)
LOG_RETURN = FEATURE_NAMES.index("log_return")
POSITION_SHARE = -len(ACCOUNT_FEATURES)
HOLD = TradingRules().hold_threshold


def observations(n: int) -> npt.NDArray[np.float32]:
    """``n`` flat rows: no returns, no position, all cash."""
    obs = np.zeros((n, WIDTH), dtype=np.float32)
    obs[:, POSITION_SHARE + 1] = 1.0
    return obs


def with_returns(returns: list[float]) -> npt.NDArray[np.float32]:
    """One row whose last ``len(returns)`` bars have these log returns (oldest first)."""
    obs = observations(1)
    first = WINDOW - len(returns)
    for k, r in enumerate(returns):
        obs[0, (first + k) * N_BAR_FEATURES + LOG_RETURN] = r
    return obs


def random_observations(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """Random feature rows with no position (so the probe never presses)."""
    obs = np.random.default_rng(seed).uniform(-1, 1, (n, WIDTH)).astype(np.float32)
    obs[:, POSITION_SHARE] = 0.0
    return obs


# ---------------------------------------------------------------- momentum


def test_momentum_buys_after_gains() -> None:
    action = MomentumPolicy(window=WINDOW, lookback=3).act(with_returns([0.01, 0.01, 0.01]))

    assert action.tolist() == pytest.approx([np.tanh(25.0 * 0.03)])
    assert classify(action, HOLD).tolist() == [ActionKind.BUY]


def test_momentum_sells_after_losses() -> None:
    action = MomentumPolicy(window=WINDOW, lookback=3).act(with_returns([-0.02, 0.0, -0.01]))

    assert action.tolist() == pytest.approx([np.tanh(-25.0 * 0.03)])
    assert classify(action, HOLD).tolist() == [ActionKind.SELL]


def test_momentum_holds_when_flat() -> None:
    action = MomentumPolicy(window=WINDOW, lookback=WINDOW).act(observations(1))

    assert action.tolist() == [0.0]
    assert classify(action, HOLD).tolist() == [ActionKind.HOLD]


def test_momentum_looks_only_at_the_last_lookback_bars() -> None:
    policy = MomentumPolicy(window=WINDOW, lookback=2)

    old_gain = with_returns([0.5, 0.0, 0.0])  # three bars ago: outside the lookback

    assert policy.act(old_gain).tolist() == [0.0]


def test_momentum_acts_on_each_row_of_a_batch() -> None:
    batch = np.vstack([with_returns([0.01]), observations(1), with_returns([-0.01])])

    actions = MomentumPolicy(window=WINDOW, lookback=2).act(batch)

    assert classify(actions, HOLD).tolist() == [ActionKind.BUY, ActionKind.HOLD, ActionKind.SELL]


@pytest.mark.parametrize("lookback", [0, WINDOW + 1])
def test_momentum_lookback_outside_the_window_is_refused(lookback: int) -> None:
    with pytest.raises(ValueError, match="lookback must be in"):
        MomentumPolicy(window=WINDOW, lookback=lookback)


# ---------------------------------------------------------------- probe


def test_probe_gives_identical_actions_for_identical_observations() -> None:
    obs = random_observations(200)

    first = ProbePolicy(seed=3).act(obs)
    again = ProbePolicy(seed=3).act(obs.copy())
    policy = ProbePolicy(seed=3)
    twice = [policy.act(obs), policy.act(obs)]

    assert np.array_equal(first, again)
    assert np.array_equal(twice[0], first)
    assert np.array_equal(twice[1], first)


def test_probe_action_of_a_row_does_not_depend_on_the_other_rows() -> None:
    obs = random_observations(50)

    whole = ProbePolicy().act(obs)
    alone = np.concatenate([ProbePolicy().act(obs[i : i + 1]) for i in range(50)])

    assert np.array_equal(whole, alone)


def test_probe_with_different_seeds_gives_different_actions() -> None:
    obs = random_observations(200)

    assert not np.array_equal(ProbePolicy(seed=1).act(obs), ProbePolicy(seed=2).act(obs))


def test_probe_actions_stay_in_range_and_cover_buy_sell_and_hold() -> None:
    actions = ProbePolicy().act(random_observations(1_000))

    assert actions.shape == (1_000,)
    assert actions.min() >= -1.0
    assert actions.max() <= 1.0
    kinds = set(classify(actions, HOLD).tolist())
    assert kinds == {ActionKind.BUY, ActionKind.SELL, ActionKind.HOLD}


def test_probe_buys_fully_where_the_position_share_exceeds_press() -> None:
    obs = random_observations(6)
    obs[:, POSITION_SHARE] = [0.0, 0.05, 0.08, 0.0801, 0.2, 1.0]

    actions = ProbePolicy(press=0.08).act(obs)

    assert actions[3:].tolist() == [1.0, 1.0, 1.0]
    assert actions[:3].tolist() == ProbePolicy(press=0.08).act(obs[:3]).tolist()
    assert ProbePolicy(press=1.5).act(obs[3:]).tolist() != [1.0, 1.0, 1.0]


# ---------------------------------------------------------------- registry


def test_make_policy_builds_the_named_policies() -> None:
    momentum: Policy = make_policy("momentum", window=WINDOW)
    probe: Policy = make_policy("probe", window=WINDOW)

    assert isinstance(momentum, MomentumPolicy)
    assert momentum.window == WINDOW
    assert isinstance(probe, ProbePolicy)
    assert (momentum.name, probe.name) == ("momentum", "probe")


@pytest.mark.parametrize(("window", "lookback"), [(1, 1), (4, 4), (10, 5)])
def test_make_policy_momentum_looks_back_five_bars_or_the_whole_shorter_window(
    window: int, lookback: int
) -> None:
    policy = make_policy("momentum", window=window)

    assert isinstance(policy, MomentumPolicy)
    assert policy.lookback == lookback


def test_make_policy_refuses_an_unknown_name_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown policy 'nope'") as error:
        make_policy("nope", window=WINDOW)

    assert "momentum" in str(error.value)
    assert "probe" in str(error.value)


def test_buy_and_hold_buys_every_symbol_once_then_holds() -> None:
    from rl_agents.data import load_bars, universe
    from rl_agents.envs import EnvConfig, PortfolioTradingEnv

    frame = universe(load_bars("bytetheory"), 6, start=20, steps=30)
    env = PortfolioTradingEnv(EnvConfig(), frame=frame)
    policy = make_policy("buy-and-hold", window=10)
    obs, _ = env.reset(seed=0)
    first = policy.act(obs)
    assert first.tolist() == [1.0] * 6
    obs, *_ = env.step(first)
    obs, *_ = env.step(policy.act(obs))  # the buys filled at this step's open
    assert (env.engine.position > 0).all()
    assert env.engine.cash < 0.2 * env.engine.equity  # the cash went into the symbols
    assert policy.act(obs).tolist() == [0.0] * 6


def test_random_policy_is_uniform_and_seeded() -> None:
    from rl_agents.baselines.reference import RandomPolicy

    obs = np.zeros((1000, 63), dtype=np.float32)
    a, b = RandomPolicy(3).act(obs), RandomPolicy(3).act(obs)
    assert np.array_equal(a, b) and a.min() >= -1.0 and a.max() <= 1.0
    assert abs(a.mean()) < 0.1 and (a < -0.5).mean() > 0.2 and (a > 0.5).mean() > 0.2
    assert make_policy("random", window=10).name == "random"
