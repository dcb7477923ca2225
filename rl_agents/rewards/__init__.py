"""Reward engineering, phase C of the plan: five objectives, regime-adaptive weights,
potential-based shaping and a reward-hacking check (docs/rewards.md).

``wrap_env`` puts the shaper around a trading env for training;
``report`` reads what it measured (for a tracker); ``serving_policy`` is
the identity, since rewards do not act. The wrapper is imported on first
use, so that ``rl_agents.sac.config`` reading ``RewardConfig`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rl_agents.rewards.config import OBJECTIVES, RewardConfig

if TYPE_CHECKING:
    import gymnasium as gym

    from rl_agents.rewards.wrapper import RewardShapingWrapper


def wrap_env(env: gym.Env[Any, Any], config: RewardConfig) -> RewardShapingWrapper:
    """``env`` (a ContinuousTradingEnv or PortfolioTradingEnv, wrapped or not) trained on the
    shaped rewards of ``config``."""
    from rl_agents.rewards.wrapper import RewardShapingWrapper

    return RewardShapingWrapper(env, config)


def report(env: Any) -> dict[str, float]:
    """What the shaper of ``env`` measured so far (``RewardShapingWrapper.report``), found
    through any wrappers around it; an empty dict when ``env`` is not shaped."""
    from rl_agents.rewards.wrapper import RewardShapingWrapper

    layer = env
    while layer is not None:
        if isinstance(layer, RewardShapingWrapper):
            return layer.report()
        layer = getattr(layer, "env", None)
    return {}


def serving_policy(policy: Any, config: RewardConfig) -> Any:
    """``policy`` unchanged: the rewards shape training only, so the served policy is the
    trained one as it is."""
    return policy


__all__ = ["OBJECTIVES", "RewardConfig", "report", "serving_policy", "wrap_env"]
