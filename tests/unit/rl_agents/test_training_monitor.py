"""The training monitor: the live detector's statistics on the actions a policy trains with."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from prometheus_client import generate_latest

from rl_agents.sac.agent import Progress
from rl_agents.training_monitor import RunRecord, TrainingMonitor


def step(i: int, action: object, losses: dict[str, float] | None = None) -> Progress:
    return Progress(i, losses or {}, None, None, np.asarray(action, dtype=np.float32))


def test_a_policy_that_always_answers_the_same_action_pauses_training_at_the_check() -> None:
    monitor = TrainingMonitor(check_every=10)

    paused = [monitor(step(i, [0.25])) for i in range(1, 61)]

    # Judged from 50 actions on, at the checks every 10 steps: step 50 pauses.
    assert paused.index(True) == 49
    assert monitor.pause is not None
    assert (monitor.pause.step, monitor.pause.agent, monitor.pause.diversity) == (50, 0, 0.0)


def test_diverse_actions_never_pause() -> None:
    monitor = TrainingMonitor(check_every=10)
    rng = np.random.default_rng(0)

    assert not any(monitor(step(i, rng.uniform(-1, 1, 1))) for i in range(1, 301))
    assert monitor.stats()[0].diversity > 0.8


def test_a_fleet_is_watched_agent_by_agent() -> None:
    monitor = TrainingMonitor(check_every=50)
    rng = np.random.default_rng(1)

    for i in range(1, 51):
        actions = rng.uniform(-1, 1, 3)
        actions[2] = -1.0  # agent 2 collapsed onto SELL_ALL
        paused = monitor(step(i, actions))

    assert paused and monitor.pause is not None and monitor.pause.agent == 2


def test_losses_gradient_norms_and_nan_losses_reach_prometheus() -> None:
    monitor = TrainingMonitor()
    monitor(step(1, [0.0], {"critic_loss": 0.5, "actor_loss": math.nan, "actor_grad_norm": 2.0}))

    text = generate_latest(monitor.registry).decode()

    assert 'tradingbot_training_loss{loss="critic"} 0.5' in text
    assert "tradingbot_training_nan_losses_total 1.0" in text
    assert 'tradingbot_training_gradient_norm{network="actor"} 2.0' in text
    assert "tradingbot_training_steps_total 1.0" in text


def test_temperature_entropy_q_values_intrinsic_share_and_eval_return_reach_prometheus() -> None:
    monitor = TrainingMonitor()
    losses = {"alpha": 0.2, "entropy": -0.5, "q_mean": 3.0, "intrinsic_ratio": 0.1}
    monitor(Progress(1, losses, None, 1.5, np.zeros(1, np.float32)))

    text = generate_latest(monitor.registry).decode()

    assert "tradingbot_training_alpha 0.2" in text
    assert "tradingbot_training_policy_entropy_nats -0.5" in text
    assert "tradingbot_training_q_value_mean 3.0" in text
    assert "tradingbot_training_intrinsic_reward_ratio 0.1" in text
    assert "tradingbot_training_eval_return 1.5" in text


def test_a_collapsed_fleet_head_is_named_by_its_symbol() -> None:
    monitor = TrainingMonitor(check_every=50, symbols=("AAA", "BBB", "CCC"))
    rng = np.random.default_rng(2)

    for i in range(1, 51):
        actions = rng.uniform(-1, 1, 3)
        actions[1] = 0.5  # BBB always buys the same share
        monitor(step(i, actions))

    assert monitor.pause is not None
    assert (monitor.pause.agent, monitor.pause.symbol, monitor.pause.agent_name) == (
        1,
        "BBB",
        "BBB",
    )
    assert monitor.pause.actions == 50
    assert monitor.min_diversity() == monitor.pause.diversity


def test_an_agent_without_a_known_symbol_is_named_by_its_index() -> None:
    monitor = TrainingMonitor(check_every=50)
    for i in range(1, 51):
        monitor(step(i, [0.25]))

    assert monitor.pause is not None and monitor.pause.agent_name == "0"


def test_run_record_lines_are_strict_json_with_non_finite_numbers_as_null(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"

    with RunRecord(path) as record:
        record.start(env="x")
        record.progress(10, {"critic_loss": math.nan, "alpha": 0.5}, updates=5)
        record.end("finished", 10)

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["start", "progress", "end"]
    assert lines[1]["losses"] == {"critic_loss": None, "alpha": 0.5}
    assert lines[1]["updates"] == 5 and lines[1]["steps_per_s"] > 0.0
    assert lines[2]["outcome"] == "finished"
