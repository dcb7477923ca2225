"""The training side: a trading env whose actions choose options (``wrap_env``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from rl_agents.options.config import OptionsConfig
from rl_agents.options.controller import OptionsController
from rl_agents.options.options import AUGMENTED_FEATURES, augment_space

Obs = npt.NDArray[np.float32]


class OptionsWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """``ContinuousTradingEnv`` or ``PortfolioTradingEnv`` traded through the options.

    The agent's action (one per symbol, in [-1, 1]) picks an option where the
    symbol's option has ended; the running options' policies give the actions
    the env trades on. Observations get the running option one-hot and its
    elapsed share of the timeout appended (``observation_space`` says so); the
    reward and ``info`` (``symbol_rewards`` included) are the env's, with
    ``info["options"]``: the option each symbol traded with at this step, and
    ``info["traded_actions"]``: the actions the env traded (the checkpoint
    selection measures those).
    """

    def __init__(self, env: gym.Env[Any, Any], config: OptionsConfig) -> None:
        super().__init__(env)
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or not isinstance(act_space, spaces.Box):
            raise ValueError(f"options need Box spaces, got {obs_space} and {act_space}")
        if len(obs_space.shape) == 1 and act_space.shape == (1,):
            n = 1
        elif len(obs_space.shape) == 2 and act_space.shape == obs_space.shape[:1]:
            n = obs_space.shape[0]
        else:
            raise ValueError(
                f"options trade one action per observation row: observations (d,) with actions "
                f"(1,), or (n, d) with (n,); got {obs_space.shape} and {act_space.shape}"
            )
        self.config = config
        self.controller = OptionsController(config, n)
        self.observation_space = augment_space(obs_space)
        self._view_shape = self.observation_space.shape
        self.appended_features = AUGMENTED_FEATURES
        """Names of the entries appended to each row (``rl_agents.checkpoints.describe_env``)."""
        self._obs_shape = obs_space.shape
        self._act_shape = act_space.shape

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Reset the env; every symbol chooses an option at the first step."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.controller.reset()
        return self._view(obs), info

    def step(self, action: Any) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Choose options where they ended, trade the options' actions, end the options
        whose termination holds on the next observation."""
        actions = self.controller.act(np.asarray(action, dtype=np.float64).reshape(-1))
        traded = self.controller.running
        obs, reward, terminated, truncated, info = self.env.step(actions.reshape(self._act_shape))
        info = {**info, "options": traded, "traded_actions": actions}
        return self._view(obs), float(reward), terminated, truncated, info

    def _view(self, obs: Any) -> Obs:
        rows = np.asarray(obs, dtype=np.float32).reshape(self.controller.n, -1)
        augmented = self.controller.observe(rows)
        return augmented.reshape(self._view_shape)


def wrap_env(env: gym.Env[Any, Any], config: OptionsConfig) -> OptionsWrapper:
    """``env`` traded through the options of ``config``."""
    return OptionsWrapper(env, config)


def report(env: gym.Env[Any, Any]) -> dict[str, float]:
    """Usage share and mean persistence of each option over what ``env``'s options wrapper
    ran (``OptionStats.to_dict``); an empty dict when ``env`` is not traded through options."""
    layer: Any = env
    while layer is not None:
        if isinstance(layer, OptionsWrapper):
            return layer.controller.stats.to_dict()
        layer = getattr(layer, "env", None)
    return {}
