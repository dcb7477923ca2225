"""The training monitor: the live detector's statistics on the actions a policy trains with."""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import generate_latest

from rl_agents.sac.agent import Progress
from rl_agents.training_monitor import TrainingMonitor


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
