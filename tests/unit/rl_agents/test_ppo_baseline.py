"""The discrete PPO baseline: a tiny run trained, saved, served by ``make_policy`` and checked."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from rl_agents.baselines.ppo import (
    PPOBaselineConfig,
    PPOFileError,
    PPOPolicy,
    PPOTrainingInfo,
    SymbolRotationEnv,
    baseline_data,
    load_ppo,
    main,
    one_symbol,
    save_ppo,
    sidecar_path,
    train_ppo,
)
from rl_agents.envs import EnvConfig
from rl_agents.envs.hybrid import CONTINUOUS_VALUE
from rl_agents.policies import make_policy

TINY = PPOBaselineConfig(
    total_timesteps=512, n_symbols=4, n_envs=2, n_steps=64, batch_size=64, n_epochs=2, seed=3
)
"""Four symbols in two envs, four rollouts of 128 steps."""
WIDTH = TINY.obs_width


@pytest.fixture(scope="module")
def trained() -> tuple[BaseAlgorithm, PPOTrainingInfo]:
    return train_ppo(TINY)


@pytest.fixture(scope="module")
def saved(
    trained: tuple[BaseAlgorithm, PPOTrainingInfo], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return save_ppo(*trained, tmp_path_factory.mktemp("ppo") / "ppo.zip")


def observations(n: int = 143) -> npt.NDArray[np.float32]:
    return np.random.default_rng(0).uniform(-1, 1, (n, WIDTH)).astype(np.float32)


def test_a_saved_baseline_is_served_by_make_policy_with_the_discrete_actions_raw_values(
    saved: Path,
) -> None:
    policy = make_policy(f"ppo:{saved}", window=TINY.window)
    obs = observations()

    actions = policy.act(obs)

    assert policy.name == "ppo-discrete" and policy.version
    assert actions.shape == (143,) and actions.dtype == np.float64
    assert np.isin(actions, CONTINUOUS_VALUE).all()
    assert np.array_equal(actions, policy.act(obs))  # deterministic serving


def test_the_loaded_baseline_acts_as_the_trained_model(
    trained: tuple[BaseAlgorithm, PPOTrainingInfo], saved: Path
) -> None:
    model, info = trained
    obs = observations(64)

    expected, _ = model.predict(obs, deterministic=True)
    loaded = PPOPolicy.load(saved)

    assert np.array_equal(loaded.discrete(obs), expected)
    assert loaded.version == PPOPolicy(model, info.obs_width).version


def test_the_same_seed_trains_the_same_policy(
    trained: tuple[BaseAlgorithm, PPOTrainingInfo],
) -> None:
    first = PPOPolicy(trained[0], WIDTH)
    second = PPOPolicy(train_ppo(TINY)[0], WIDTH)
    obs = observations()

    assert np.array_equal(first.act(obs), second.act(obs))
    assert first.version == second.version


def test_training_never_sees_a_day_of_the_validation_or_test_spans(
    trained: tuple[BaseAlgorithm, PPOTrainingInfo], saved: Path
) -> None:
    _, info = load_ppo(saved)
    frame, split = baseline_data(TINY)
    first_validation_day = frame.timestamps[split["validation"][0]]

    assert info.split == split and info.symbols == frame.symbols
    assert info.split["train"][1] <= info.split["validation"][0] < info.split["test"][0]
    assert info.days["train"][1] < info.days["validation"][0] < info.days["test"][0]
    env = trained[0].get_env()
    assert env is not None
    symbols = [s for symbols in env.get_attr("symbols") for s in symbols]
    assert sorted(symbols) == sorted(frame.symbols)  # every env trades its share of them
    for engines in env.get_attr("engines"):
        for engine in engines:
            assert engine.frame.timestamps.max() < first_validation_day


def test_a_baseline_trained_for_another_window_is_refused_with_the_window_to_use(
    saved: Path,
) -> None:
    with pytest.raises(ValueError, match="TRADINGBOT_AGENT_WINDOW=10"):
        make_policy(f"ppo:{saved}", window=5)
    policy = PPOPolicy.load(saved)
    with pytest.raises(ValueError, match=f"expected observations \\[n, {WIDTH}\\]"):
        policy.act(np.zeros((3, WIDTH - 1), np.float32))


def test_a_zip_without_its_sidecar_is_refused(saved: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.zip"
    lonely.write_bytes(saved.read_bytes())

    with pytest.raises(PPOFileError, match="sidecar"):
        PPOPolicy.load(lonely)


def test_each_training_env_trades_every_one_of_its_symbols_once_per_pass() -> None:
    frame, split = baseline_data(TINY)
    train = frame.window(*split["train"])
    env = SymbolRotationEnv(EnvConfig(), [one_symbol(train, s) for s in train.symbols])

    first = [env.reset(seed=1)[1]["symbol"], *(env.reset()[1]["symbol"] for _ in range(3))]
    second = [env.reset()[1]["symbol"] for _ in range(4)]
    again = [env.reset(seed=1)[1]["symbol"], *(env.reset()[1]["symbol"] for _ in range(3))]

    assert sorted(first) == sorted(second) == sorted(train.symbols)
    assert again == first  # a seed restarts the same order


def test_the_cli_saves_a_baseline_with_its_validation_action_distribution(tmp_path: Path) -> None:
    out = tmp_path / "cli.zip"

    code = main(
        [
            "--out", str(out),
            "--total-timesteps", "64",
            "--n-symbols", "2",
            "--n-envs", "1",
            "--n-steps", "64",
            "--n-epochs", "1",
            "--net-arch", "32,16",
        ]
    )  # fmt: skip

    assert code == 0 and out.is_file()
    record = json.loads(sidecar_path(out).read_text())
    assert record["config"]["net_arch"] == [32, 16]
    model = PPO.load(out, device="cpu")
    widths = [
        m.out_features for m in model.policy.mlp_extractor.policy_net if hasattr(m, "out_features")
    ]
    assert widths == [32, 16]
    validation = record["validation"]
    start, stop = record["split"]["validation"]
    assert sum(validation["counts"].values()) == 2 * (stop - start - 1)  # 2 symbols, 1 episode
    assert validation["shares"][validation["dominant"]] == validation["dominant_share"]
    assert sum(validation["shares"].values()) == pytest.approx(1.0)
    assert make_policy(f"ppo:{out}", window=10).act(observations(3)).shape == (3,)


DQN_TINY = dataclasses.replace(
    TINY, algorithm="dqn", total_timesteps=256, batch_size=32, dqn_learning_starts=64
)
"""The same four symbols in two envs, trained by SB3's DQN (updates from step 64 on)."""


def test_a_dqn_baseline_is_saved_loaded_and_served_as_dqn_but_not_as_ppo(tmp_path: Path) -> None:
    model, info = train_ppo(DQN_TINY)
    saved = save_ppo(model, info, tmp_path / "dqn.zip")
    obs = observations()

    policy = make_policy(f"dqn:{saved}", window=TINY.window)

    assert isinstance(model, DQN) and policy.name == "dqn-discrete"
    expected, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(PPOPolicy.load(saved).discrete(obs), expected)  # the greedy action
    assert np.isin(policy.act(obs), CONTINUOUS_VALUE).all()
    with pytest.raises(ValueError, match=f"serve it as dqn:{saved}"):
        make_policy(f"ppo:{saved}", window=TINY.window)


def test_the_validation_watch_judges_the_deterministic_policy_on_the_validation_days() -> None:
    _, info = train_ppo(dataclasses.replace(DQN_TINY, validate_every=128, pause_below=0.0))

    frame, split = baseline_data(TINY)
    start, stop = split["validation"]
    assert [v["step"] for v in info.validations] == [128, 256]  # watching only: the whole budget
    for judged in info.validations:
        assert sum(judged["counts"].values()) == frame.n_symbols * (stop - start - 1)
        assert 0.0 <= judged["diversity"] <= 1.0
    assert info.pause is None


def test_a_collapse_on_the_validation_days_pauses_training_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "paused.zip"
    argv = [
        "--out", str(out), "--algorithm", "dqn", "--total-timesteps", "512", "--n-symbols", "4",
        "--n-envs", "2", "--dqn-learning-starts", "32", "--validate-every", "64",
        "--pause-below", "1",  # 7 values in 20 bins are always below 1
        # (the sampled actions are judged first at step 100: the watch comes first)
    ]  # fmt: skip

    code = main(argv)

    assert code == 3
    record = json.loads(sidecar_path(out).read_text())
    assert record["pause"]["env"] == "validation" and record["pause"]["step"] == 64
    assert record["timesteps"] == 64 and record["config"]["algorithm"] == "dqn"
    assert "deterministic actions on the validation days" in capsys.readouterr().err


def test_an_unknown_algorithm_is_refused_with_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--algorithm", "a2c"]) == 2
    assert "ppo, dqn" in capsys.readouterr().err
