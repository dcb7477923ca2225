"""The plan's phases B and C switched on from a ``SACConfig``: one place for training and serving.

Training wraps its environments with ``training_env`` (the shaped rewards,
then the options, then the return goal), and serving wraps a checkpoint's
policy with ``serving_policy`` from the same config, so what a checkpoint
was trained on is what the symbol agents run. Each piece is off by default.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rl_agents.sac.config import SACConfig


def training_env(env: gym.Env[Any, Any], config: SACConfig) -> gym.Env[Any, Any]:
    """``env`` with the enabled pieces of ``config`` wrapped around it (none: ``env``)."""
    if config.rewards.enabled:
        from rl_agents.rewards import wrap_env as shaped

        env = shaped(env, config.rewards)
    if config.options.enabled:
        from rl_agents.options import wrap_env as with_options

        env = with_options(env, config.options)
    if config.her.enabled:
        from rl_agents.her import wrap_env as with_goal

        env = with_goal(env, config.her)
    return env


def serving_policy(policy: Any, config: SACConfig) -> Any:
    """The policy a checkpoint trained with ``config`` is served as (the pieces that act)."""
    if config.her.enabled:
        from rl_agents.her import serving_policy as goal_policy

        policy = goal_policy(policy, config.her)
    if config.options.enabled:
        from rl_agents.options import serving_policy as options_policy

        policy = options_policy(policy, config.options)
    return policy
