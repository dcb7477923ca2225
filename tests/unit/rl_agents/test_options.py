"""Hierarchical options of phase B: each option's initiation, policy and termination on
hand-made observations, the timeout, the controller's choice, the statistics, training
versus serving, and a smoke run from the command line to a served checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import pytest
import torch

import rl_agents  # noqa: F401 - registers the trading environments
from core.features import ACCOUNT_FEATURES, FEATURE_NAMES, N_BAR_FEATURES
from rl_agents.checkpoints import CheckpointMismatch, load_checkpoint
from rl_agents.data import load_bars, universe
from rl_agents.envs import ContinuousTradingEnv, EnvConfig, PortfolioTradingEnv
from rl_agents.options import (
    AUGMENTED_FEATURES,
    Option,
    OptionsConfig,
    OptionsController,
    choose,
    report,
    serving_policy,
    wrap_env,
)
from rl_agents.policies import ProbePolicy, make_policy
from rl_agents.sac import __main__ as cli
from rl_agents.sac.config import SACConfig

WINDOW = 10
WIDTH = WINDOW * N_BAR_FEATURES + len(ACCOUNT_FEATURES)
CONFIG = OptionsConfig(enabled=True)
BINS = {  # an agent action in the middle of each option's fifth of [-1, 1]
    Option.CLOSE_POSITION: -0.8,
    Option.SCALP: -0.4,
    Option.WAIT: 0.0,
    Option.TREND_FOLLOW: 0.4,
    Option.OPEN_LONG: 0.8,
}


def row(
    *,
    trend: float = 0.0,
    previous_trend: float = 0.0,
    last_range: float = 0.02,
    previous_range: float = 0.02,
    last_return: float = 0.0,
    position: float = 0.0,
    unrealized: float = 0.0,
) -> npt.NDArray[np.float32]:
    """One observation row: a 10-bar window whose other bars have a range of 0.02."""
    bars = np.zeros((WINDOW, N_BAR_FEATURES))
    bars[:, FEATURE_NAMES.index("range")] = 0.02
    bars[-1, FEATURE_NAMES.index("range")] = last_range
    bars[-2, FEATURE_NAMES.index("range")] = previous_range
    bars[-1, FEATURE_NAMES.index("trend_10")] = trend
    bars[-2, FEATURE_NAMES.index("trend_10")] = previous_trend
    bars[-1, FEATURE_NAMES.index("log_return")] = last_return
    account = [position, 1.0 - position, unrealized]
    return np.concatenate([bars.ravel(), account]).astype(np.float32)[None, :]


def start(controller: OptionsController, obs: npt.NDArray[np.float32], option: Option) -> float:
    """Observe ``obs`` and choose ``option`` with the agent's action; the trade action."""
    controller.observe(obs)
    return float(controller.act([BINS[option]])[0])


def run(controller: OptionsController, obs: npt.NDArray[np.float32]) -> tuple[int, float]:
    """Observe ``obs`` (the choice is ignored while an option runs): (running option, action)."""
    controller.observe(obs)
    action = float(controller.act([0.0])[0])
    return int(controller.running[0]), action


# ------------------------------------------------------------------ the options


def test_agent_action_bins_pick_the_options_from_close_to_open_long() -> None:
    picked = choose([-1.0, -0.61, -0.6, -0.21, 0.0, 0.19, 0.2, 0.59, 0.6, 1.0])

    assert [Option(o) for o in picked] == [
        Option.CLOSE_POSITION, Option.CLOSE_POSITION, Option.SCALP, Option.SCALP,
        Option.WAIT, Option.WAIT, Option.TREND_FOLLOW, Option.TREND_FOLLOW,
        Option.OPEN_LONG, Option.OPEN_LONG,
    ]  # fmt: skip


def test_open_long_buys_progressively_without_a_position_and_ends_above_five_percent() -> None:
    controller = OptionsController(CONFIG, 1)

    actions = [start(controller, row(), Option.OPEN_LONG)]
    actions += [run(controller, row())[1] for _ in range(3)]
    ended = run(controller, row(position=0.06))

    assert actions == pytest.approx([0.3, 0.5, 0.7, 0.7])
    assert Option(ended[0]) is not Option.OPEN_LONG  # ended: the agent chose again (wait)
    assert controller.stats.runs[Option.OPEN_LONG] == 1
    assert controller.stats.run_steps[Option.OPEN_LONG] == 4


def test_open_long_ends_after_ten_steps_when_the_position_stays_small() -> None:
    controller = OptionsController(CONFIG, 1)
    start(controller, row(), Option.OPEN_LONG)

    running = [run(controller, row(position=0.01))[0] for _ in range(10)]

    assert running[:9] == [Option.OPEN_LONG] * 9
    assert running[9] == Option.WAIT  # the tenth observation ended it after 10 steps


def test_open_long_cannot_start_with_a_position_and_wait_holds_instead() -> None:
    controller = OptionsController(CONFIG, 1)

    action = start(controller, row(position=0.02), Option.OPEN_LONG)

    assert Option(controller.running[0]) is Option.WAIT and action == 0.0
    assert controller.stats.fallbacks == 1 and controller.stats.choices == 1


def test_close_position_sells_faster_at_a_loss_and_ends_when_flat() -> None:
    config = OptionsConfig(enabled=True, close_fraction=0.4, close_pnl_gain=5.0)
    even = OptionsController(config, 1)
    losing = OptionsController(config, 1)
    winning = OptionsController(config, 1)

    assert start(even, row(position=0.1), Option.CLOSE_POSITION) == pytest.approx(-0.4)
    assert start(losing, row(position=0.1, unrealized=-0.1), Option.CLOSE_POSITION) == (
        pytest.approx(-0.9)
    )
    assert start(winning, row(position=0.1, unrealized=0.1), Option.CLOSE_POSITION) == (
        pytest.approx(-0.2)  # never less than half of close_fraction
    )
    assert run(even, row(position=0.03))[0] == Option.CLOSE_POSITION
    assert run(even, row(position=0.004))[0] == Option.WAIT  # flat: it ended


def test_close_position_cannot_start_without_a_position() -> None:
    controller = OptionsController(CONFIG, 1)

    assert start(controller, row(), Option.CLOSE_POSITION) == 0.0
    assert Option(controller.running[0]) is Option.WAIT


def test_trend_follow_adds_while_the_trend_holds_and_ends_when_it_halves() -> None:
    controller = OptionsController(CONFIG, 1)  # trend strength: trend_10 / mean range (0.02)

    first = start(controller, row(trend=0.02), Option.TREND_FOLLOW)  # strength 1.0
    stronger = run(controller, row(trend=0.03, previous_trend=0.02))
    weaker = run(controller, row(trend=0.012, previous_trend=0.03))  # 0.6 of the start
    faded = run(controller, row(trend=0.009, previous_trend=0.012))  # 0.45 < 0.5

    assert first == pytest.approx(0.3) and stronger == (Option.TREND_FOLLOW, pytest.approx(0.3))
    assert weaker == (Option.TREND_FOLLOW, 0.0)  # maintained, not added to
    assert faded[0] != Option.TREND_FOLLOW


def test_trend_follow_needs_a_strong_trend_to_start() -> None:
    controller = OptionsController(CONFIG, 1)

    start(controller, row(trend=0.01), Option.TREND_FOLLOW)  # strength 0.5 < 0.75

    assert Option(controller.running[0]) is Option.WAIT


def test_scalp_trades_against_the_last_bar_for_five_steps_in_high_volatility() -> None:
    controller = OptionsController(CONFIG, 1)
    volatile = {"last_range": 0.05}  # 2.2 times the window's mean range

    actions = [start(controller, row(last_return=-0.01, **volatile), Option.SCALP)]
    steps = [run(controller, row(last_return=r, **volatile)) for r in (0.01, -0.02, 0.02, 0.01)]
    after = run(controller, row(last_return=-0.01, **volatile))

    assert actions + [a for _, a in steps] == pytest.approx([0.3, -0.3, 0.3, -0.3, -0.3])
    assert [o for o, _ in steps] == [Option.SCALP] * 4
    assert after[0] != Option.SCALP  # five steps: over


def test_scalp_ends_at_its_profit_target_and_needs_volatility_to_start() -> None:
    controller = OptionsController(CONFIG, 1)
    calm = OptionsController(CONFIG, 1)

    start(controller, row(last_range=0.05), Option.SCALP)
    held = run(controller, row(last_range=0.05, position=0.03, unrealized=0.005))
    target = run(controller, row(last_range=0.05, position=0.03, unrealized=0.011))
    start(calm, row(), Option.SCALP)

    assert held[0] == Option.SCALP and target[0] != Option.SCALP
    assert Option(calm.running[0]) is Option.WAIT


def test_wait_holds_and_ends_when_a_new_market_signal_appears() -> None:
    controller = OptionsController(CONFIG, 1)
    ongoing = OptionsController(CONFIG, 1)

    assert start(controller, row(), Option.WAIT) == 0.0
    quiet = run(controller, row())
    run(controller, row(trend=0.02))  # a trend appears
    start(ongoing, row(trend=0.02, previous_trend=0.02), Option.WAIT)
    trend_goes_on = run(ongoing, row(trend=0.02, previous_trend=0.02))

    assert quiet == (Option.WAIT, 0.0)
    assert controller.stats.runs[Option.WAIT] == 1  # the trend's onset ended the first wait
    assert trend_goes_on[0] == Option.WAIT and ongoing.stats.runs[Option.WAIT] == 0


@pytest.mark.parametrize(
    ("option", "obs"),
    [
        (Option.OPEN_LONG, row()),  # never reaches 5%
        (Option.CLOSE_POSITION, row(position=0.1)),  # never flat
        (Option.TREND_FOLLOW, row(trend=0.02, previous_trend=0.02)),  # never fades
        (Option.SCALP, row(last_range=0.05)),  # never hits its target
        (Option.WAIT, row()),  # no signal ever
    ],
)
def test_every_option_ends_at_the_timeout(option: Option, obs: npt.NDArray[np.float32]) -> None:
    config = OptionsConfig(enabled=True, timeout=20, open_steps=50, scalp_steps=50)
    controller = OptionsController(config, 1)
    start(controller, obs, option)

    running = [run(controller, obs)[0] for _ in range(20)]

    assert running[:19] == [option] * 19
    assert controller.stats.runs[option] == 1 and controller.stats.run_steps[option] == 20


def test_a_running_option_ignores_the_agent_and_the_view_says_which_runs() -> None:
    controller = OptionsController(CONFIG, 2)
    obs = np.concatenate([row(), row(position=0.1)])

    first = controller.observe(obs)
    controller.act([BINS[Option.OPEN_LONG], BINS[Option.CLOSE_POSITION]])
    second = controller.observe(obs)
    actions = controller.act([BINS[Option.WAIT], BINS[Option.OPEN_LONG]])

    assert first.shape == (2, WIDTH + len(AUGMENTED_FEATURES))
    assert np.array_equal(first[:, :WIDTH], obs) and not first[:, WIDTH:].any()  # choose now
    assert second[0, WIDTH + Option.OPEN_LONG] == 1.0 and second[1, WIDTH + Option.CLOSE_POSITION]
    assert second[:, -1] == pytest.approx([1 / 20, 1 / 20])  # one step of the 20-step timeout
    assert actions == pytest.approx([0.5, -0.4])  # the options go on, whatever the agent says


def test_usage_and_persistence_of_a_constructed_sequence() -> None:
    controller = OptionsController(CONFIG, 1)
    start(controller, row(), Option.OPEN_LONG)  # open-long: 2 steps
    run(controller, row())
    start(controller, row(position=0.06), Option.CLOSE_POSITION)  # close: 3 steps
    run(controller, row(position=0.03))
    run(controller, row(position=0.01))
    start(controller, row(), Option.TREND_FOLLOW)  # no trend: falls back to wait, 1 step
    controller.reset()  # the episode ends: the wait's run is cut at 1 step

    stats = controller.stats.to_dict()

    assert stats["usage/open_long"] == pytest.approx(2 / 6)
    assert stats["usage/close_position"] == pytest.approx(3 / 6)
    assert stats["usage/wait"] == pytest.approx(1 / 6)
    assert stats["usage/trend_follow"] == 0.0 and stats["usage/scalp"] == 0.0
    assert stats["persistence/open_long"] == 2.0 and stats["persistence/close_position"] == 3.0
    assert stats["persistence/wait"] == 1.0 and stats["persistence/mean"] == 2.0
    assert stats["fallback_share"] == pytest.approx(1 / 3) and stats["choices"] == 3.0


def test_options_config_refuses_bad_values_and_reads_from_yaml() -> None:
    with pytest.raises(ValueError, match="options.timeout"):
        OptionsConfig(timeout=0)
    with pytest.raises(ValueError, match="options.trend_fade"):
        OptionsConfig(trend_fade=1.5)

    config = SACConfig.from_yaml("options:\n  enabled: true\n  timeout: 12\n  scalp_size: 0.4\n")

    assert config.options == OptionsConfig(enabled=True, timeout=12, scalp_size=0.4)


# ------------------------------------------------------------------ the envs


class RecordActions(gym.Wrapper[Any, Any, Any, Any]):
    """Keeps every action the env below was stepped with."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.actions: list[npt.NDArray[np.float64]] = []

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        self.actions.append(np.array(action, dtype=np.float64).reshape(-1))
        return self.env.step(action)


def small_portfolio() -> PortfolioTradingEnv:
    return PortfolioTradingEnv(EnvConfig(n_symbols=5, steps=60))


def test_wrapped_envs_say_the_augmented_observation_and_keep_symbol_rewards() -> None:
    portfolio = wrap_env(gym.make("tradingbot/PortfolioTrading-v0", config=EnvConfig(
        n_symbols=5, steps=60)), CONFIG)  # fmt: skip
    single = wrap_env(
        gym.make("tradingbot/ContinuousTrading-v0", config=EnvConfig(steps=60)), CONFIG
    )

    obs, _ = portfolio.reset(seed=0)
    step = portfolio.step(np.full(5, BINS[Option.OPEN_LONG], np.float32))
    one, _ = single.reset(seed=0)

    assert (
        portfolio.observation_space.shape == (5, WIDTH + 6) and obs in portfolio.observation_space
    )
    assert single.observation_space.shape == (WIDTH + 6,) and one in single.observation_space
    info = step[4]
    assert info["symbol_rewards"].shape == (5,)
    equity_return = info["equity"] / portfolio.unwrapped.engine.previous_equity - 1.0  # type: ignore[attr-defined]
    assert info["symbol_rewards"].sum() == pytest.approx(equity_return)
    assert [Option(o) for o in info["options"]] == [Option.OPEN_LONG] * 5
    position = step[0][:, WIDTH - len(ACCOUNT_FEATURES)]
    assert np.all(position > CONFIG.target_position)  # the first buy filled at the next open
    assert not step[0][:, WIDTH:].any()  # so open-long ended: every symbol chooses again


def test_report_is_empty_without_options_and_found_under_other_wrappers() -> None:
    plain = small_portfolio()
    wrapped = gym.wrappers.RecordEpisodeStatistics(wrap_env(small_portfolio(), CONFIG))
    wrapped.reset(seed=0)
    for _ in range(5):
        wrapped.step(np.zeros(5, np.float32))

    stats = report(wrapped)

    assert report(plain) == {}
    assert sum(stats[f"usage/{o.label}"] for o in Option) == pytest.approx(1.0)
    assert stats["usage/wait"] == 1.0 and stats["choices"] >= 5.0  # each symbol chose once


def test_training_wrapper_and_serving_policy_trade_the_same_actions() -> None:
    inner = ProbePolicy()  # a deterministic agent: its action is a hash of the row it sees
    training = RecordActions(small_portfolio())
    env = wrap_env(training, CONFIG)
    serving_env = small_portfolio()
    served = serving_policy(inner, CONFIG)

    obs, _ = env.reset(options={"start": 0})
    rows, _ = serving_env.reset(options={"start": 0})
    served_actions = []
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(inner.act(obs))
        served_actions.append(served.act(rows))
        rows, *_ = serving_env.step(served_actions[-1])
        done = terminated or truncated

    assert len(training.actions) == 59
    assert np.array_equal(np.stack(training.actions), np.stack(served_actions))
    assert served.name == "probe" and served.version == inner.version
    assert all(report(env)[f"usage/{o.label}"] > 0 for o in Option)  # every option traded


# ------------------------------------------------------------------ train, then serve


def test_options_training_from_the_command_line_writes_a_checkpoint_the_agents_serve(
    tmp_path: Path,
) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "options.pt"

    code = cli.main(
        ["--options.enabled", "true", "--out", str(out), "--no-progress",
         "--training.total_timesteps", "200", "--training.learning_starts", "100",
         "--training.batch_size", "32", "--training.hidden_sizes", "[16, 16]",
         "--training.device", "cpu", "--eval-every", "200"]
    )  # fmt: skip

    assert code == 0 and out.is_file()
    checkpoint = load_checkpoint(out)
    assert checkpoint.config.options.enabled
    assert checkpoint.observation.shape == (WIDTH + 6,)
    assert checkpoint.observation.feature_names[-6:] == AUGMENTED_FEATURES  # type: ignore[index]
    policy = make_policy(f"sac:{out}", window=WINDOW)
    assert (policy.name, policy.version) == ("sac", checkpoint.version)
    with pytest.raises(CheckpointMismatch):
        make_policy(f"sac:{out}", window=5)

    # Served on a symbol's real bars, it trades what the trained agent trades in training.
    frame = universe(load_bars("bytetheory"), 1, start=0, steps=40)
    recorded = RecordActions(ContinuousTradingEnv(EnvConfig(), frame=frame))
    env = wrap_env(recorded, checkpoint.config.options)
    agent = checkpoint.agent()
    serving_env = ContinuousTradingEnv(EnvConfig(), frame=frame)
    obs, _ = env.reset(options={"start": 0})
    rows, _ = serving_env.reset(options={"start": 0})
    served = []
    for _ in range(39):
        obs, *_ = env.step(agent.act(obs, deterministic=True))
        served.append(policy.act(rows[None, :]))
        rows, *_ = serving_env.step(served[-1])
    assert np.array_equal(np.concatenate(recorded.actions), np.concatenate(served))
    assert np.all(np.abs(np.concatenate(served)) <= 1.0)
