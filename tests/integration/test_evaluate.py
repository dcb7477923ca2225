"""``tradingbot evaluate`` on a real broker: held-out days, every contender streamed, gates.

A small SAC fleet (8 symbols, a few hundred steps) is trained on the training
span, then judged with buy-and-hold and the random policy on the held-out test
days through the lockstep pipeline. The tables are checked against the
broker's ledger and against the offline environment on the same days.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.gates import gate_table
from rl_agents.baselines.reference import BuyAndHoldPolicy
from rl_agents.checkpoints import describe_env, save_checkpoint
from rl_agents.data import chronological_split, load_bars, universe
from rl_agents.envs import EnvConfig, PortfolioTradingEnv
from rl_agents.sac.agent import train
from rl_agents.sac.config import SACConfig
from services.evaluation import (
    EvaluationError,
    EvaluationOptions,
    EvaluationResult,
    format_tables,
    held_out_frame,
    run_evaluation,
)

N = 8


def fleet_checkpoint(path: Path, span: str) -> Path:
    """A briefly trained SAC fleet of the first N symbols on one chronological span."""
    full = universe(load_bars("bytetheory"), N)
    env = PortfolioTradingEnv(
        EnvConfig(), frame=full.window(*chronological_split(full.n_steps)[span])
    )
    config = SACConfig(
        env_type="portfolio", total_timesteps=300, learning_starts=100, batch_size=64,
        hidden_sizes=(32, 32), seed=1,
    )  # fmt: skip
    result = train(env, config, eval_episodes=1)
    names, data_span = describe_env(env)
    return save_checkpoint(
        path, result.agent, observation_space=env.observation_space,
        action_space=env.action_space, feature_names=names, data_span=data_span,
    )  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> EvaluationResult:
    tmp = tmp_path_factory.mktemp("evaluate")
    sac = fleet_checkpoint(tmp / "fleet.pt", "train")
    return run_evaluation(
        EvaluationOptions(
            sac=sac, symbols=N, bootstrap=kafka_bootstrap, runs_dir=tmp, json_path=tmp / "e.json"
        )
    )


def test_every_contender_is_replayed_on_the_held_out_days(evaluated: EvaluationResult) -> None:
    frame, bounds = held_out_frame("bytetheory", N, "test")
    assert (
        evaluated.span
        == bounds
        == chronological_split(universe(load_bars("bytetheory"), N).n_steps)["test"]
    )
    labels = list(evaluated.tables)
    assert labels[0].startswith("SAC fleet") and labels[1:] == ["buy-and-hold", "random (seed 0)"]
    for table in evaluated.tables.values():
        assert table.steps == frame.n_steps
        assert [a.symbol for a in table.agents] == list(frame.symbols)
        assert all(a.actions == frame.n_steps for a in table.agents)
        assert table.summary.complete


def test_buy_and_hold_streamed_matches_the_offline_environment(
    evaluated: EvaluationResult,
) -> None:
    frame, _ = held_out_frame("bytetheory", N, "test")
    env = PortfolioTradingEnv(EnvConfig(), frame=frame)
    obs, _ = env.reset(seed=0)
    policy = BuyAndHoldPolicy()
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(policy.act(obs.reshape(N, -1)))
        done = terminated or truncated
    table = evaluated.tables["buy-and-hold"]
    assert table.summary.final_equity == pytest.approx(env.engine.equity, abs=1e-6)
    assert table.fleet.trades == N  # one buy per symbol, then holding
    assert table.fleet.dominant_bin > 0.9


def test_the_printed_table_and_files_hold_every_agent(evaluated: EvaluationResult) -> None:
    text = format_tables(evaluated)
    for row in ("Sharpe (annual)", "max drawdown", "win rate", "trades per day",
                "action diversity (mean)", "dominant-bin share (max agent)", "trade frequency",
                "profitable agents"):  # fmt: skip
        assert row in text
    assert "Hard gates of SAC fleet" in text
    assert "Sharpe annualised with 252 periods/yr: 1d bars (weekdays)" in text
    assert all(g.gate in text for g in evaluated.gates)
    rows = (evaluated.out_dir / "agents.csv").read_text().splitlines()
    assert len(rows) == 1 + N * len(evaluated.tables)
    assert evaluated.passed == all(g.passed for g in evaluated.gates)


def test_gate_table_is_a_fold_of_the_ledger(
    evaluated: EvaluationResult, kafka_bootstrap: str
) -> None:
    import asyncio

    from core.events import PortfolioClosed
    from services.kafka import read_run
    from streams.topics import PORTFOLIO_EVENTS

    table = evaluated.tables["random (seed 0)"]
    events = asyncio.run(
        read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, table.run_id, until=PortfolioClosed)
    )
    again = gate_table(events)
    assert again.fleet == table.fleet
    assert np.isclose(
        sum(a.pnl for a in again.agents), again.summary.final_equity - again.summary.initial_equity
    )


def test_a_checkpoint_trained_on_the_test_days_is_refused(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    leaky = fleet_checkpoint(tmp_path / "leaky.pt", "test")
    with pytest.raises(EvaluationError, match="reaches into the evaluated days"):
        run_evaluation(
            EvaluationOptions(sac=leaky, symbols=N, bootstrap=kafka_bootstrap, runs_dir=tmp_path)
        )


def test_a_fleet_of_other_symbols_is_refused_by_the_cli(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli import main

    sac = fleet_checkpoint(tmp_path / "fleet.pt", "train")
    argv = ["evaluate", "--sac", str(sac), "--symbols", str(N + 1)]
    code = main([*argv, "--bootstrap", kafka_bootstrap, "--runs-dir", str(tmp_path)])
    assert code == 1
    assert "other symbols" in capsys.readouterr().err


def test_the_trainers_offline_gates_equal_the_streamed_ones(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The checkpoint selection measures the gates offline; the evaluation, streamed.
    On the same days and weights they must agree."""
    from rl_agents.checkpoints import load_checkpoint
    from rl_agents.selection import validate_fleet

    sac = fleet_checkpoint(tmp_path / "fleet.pt", "train")
    frame, _ = held_out_frame("bytetheory", N, "validation")
    offline = validate_fleet(
        load_checkpoint(sac).agent(), PortfolioTradingEnv(EnvConfig(), frame=frame), step=0
    )
    streamed = run_evaluation(
        EvaluationOptions(sac=sac, symbols=N, span="validation", bootstrap=kafka_bootstrap,
                          runs_dir=tmp_path)
    )  # fmt: skip
    fleet = next(iter(streamed.tables.values())).fleet
    assert fleet.total_return == pytest.approx(offline.total_return, abs=1e-12)
    assert fleet.dominant_bin == offline.dominant_bin
    assert fleet.diversity == pytest.approx(offline.diversity, abs=1e-12)
    assert fleet.trade_frequency == pytest.approx(offline.trade_frequency, abs=1e-12)
    assert [g.passed for g in streamed.gates] == [g.passed for g in offline.gates]
