"""Hindsight experience replay for return goals, phase B (docs/her.md).

``wrap_env`` gives a trading env return goals (training), ``HERBuffer``
(``rl_agents.her.buffer``) relabels its episodes with the returns achieved
later, ``serving_policy`` serves a checkpoint trained so, and ``report`` says
how often the goals were reached.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rl_agents.her.config import HERConfig
from rl_agents.her.env import ReturnGoalEnv, goal_env
from rl_agents.her.goals import (
    ACHIEVED,
    GOAL,
    GOAL_FEATURES,
    TIME_LEFT,
    goal_reward,
    reached,
    success_stats,
    training_space,
    with_goal,
)
from rl_agents.her.policy import GoalPolicy, TradingColumns, observed_return, serving_policy


def wrap_env(env: gym.Env[Any, Any], config: HERConfig) -> ReturnGoalEnv:
    """``env`` with a return goal per symbol and goal episodes of ``config.horizon`` steps."""
    return ReturnGoalEnv(env, config)


def report(env: Any) -> dict[str, float]:
    """``her_success_rate``, ``her_goal_mean``, ``her_achieved_mean`` and ``her_episodes`` of
    the latest goal episodes of ``env`` (any wrapper around a ``ReturnGoalEnv``); empty when
    ``env`` has no return goals or no goal episode has ended yet."""
    wrapped = goal_env(env)
    return {} if wrapped is None else wrapped.report()


__all__ = [
    "ACHIEVED",
    "GOAL",
    "GOAL_FEATURES",
    "TIME_LEFT",
    "GoalPolicy",
    "HERConfig",
    "ReturnGoalEnv",
    "TradingColumns",
    "goal_env",
    "goal_reward",
    "observed_return",
    "reached",
    "report",
    "serving_policy",
    "success_stats",
    "training_space",
    "with_goal",
    "wrap_env",
]
