"""``ReturnGoalEnv``: a trading env whose episodes are goal episodes of ``horizon`` steps."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from rl_agents.her.config import HERConfig
from rl_agents.her.goals import GOAL_FEATURES, success_stats, training_space, with_goal

Obs = npt.NDArray[np.float32]

REPORT_EPISODES = 100
"""Goal episodes the success statistics cover (the latest ones)."""


class ReturnGoalEnv(gym.Wrapper[Any, Any, Any, Any]):
    """``ContinuousTradingEnv`` or ``PortfolioTradingEnv`` (or a wrapper of one) with a return
    goal per symbol.

    Each reset draws the goal (``goal +- goal_spread``, one per observation row)
    and, on a trading env, a random start from the reset seed; the episode then
    runs ``horizon`` steps and terminates: the goal's time is up, and the time
    left is part of the observation. The env's own ends (ruin, the end of the
    data) end it earlier. Every row gets ``GOAL_FEATURES`` appended
    (``observation_space`` says so). The achieved return of a row is the sum of
    its rewards since the reset: the env's reward for one symbol, the symbol's
    own ``info["symbol_rewards"]`` for a portfolio, the rewards SAC's ``train``
    gives each head. Rewards and ``info`` are the env's; the goal reward is
    computed where transitions are stored (``HERBuffer``).
    """

    def __init__(self, env: gym.Env[Any, Any], config: HERConfig) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) not in (1, 2):
            raise ValueError(f"return goals need Box observations (d,) or (n, d), got {space}")
        self.config = config
        self.observation_space = training_space(space)
        self.rows = 1 if len(space.shape) == 1 else space.shape[0]
        """Symbols, each with its own goal and achieved return."""
        self.appended_features = GOAL_FEATURES
        """Names of the entries this wrapper appends to each row (``describe_env`` reads them)."""
        self.goal = np.full(self.rows, config.goal)
        self.achieved = np.zeros(self.rows)
        self.steps = 0
        """Steps taken in the current goal episode."""
        self.outcomes: deque[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = deque(
            maxlen=REPORT_EPISODES
        )
        """``(goals, achieved)`` of the latest finished goal episodes."""
        self._rng = np.random.default_rng()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Start a goal episode: a new goal, a random start (unless ``options`` has one)."""
        if seed is not None:
            self._rng = np.random.default_rng([seed, 0x484552])  # apart from the env's stream
        options = dict(options or {})
        engine = getattr(self.env.unwrapped, "engine", None)
        if "start" not in options and engine is not None:
            latest = max(0, engine.last_step - self.config.horizon)
            options["start"] = int(self._rng.integers(0, latest + 1))
        spread = self.config.goal_spread
        self.goal = self.config.goal + spread * self._rng.uniform(-1.0, 1.0, self.rows)
        self.achieved = np.zeros(self.rows)
        self.steps = 0
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observe(obs), info

    def step(self, action: Any) -> tuple[Obs, Any, bool, bool, dict[str, Any]]:
        """Step the env; add each row's reward to its achieved return; terminate at the
        horizon."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        rewards = info.get("symbol_rewards", reward) if self.rows > 1 else reward
        self.achieved = self.achieved + np.broadcast_to(np.asarray(rewards, np.float64), self.rows)
        self.steps += 1
        terminated = bool(terminated) or self.steps >= self.config.horizon
        if terminated or truncated:
            self.outcomes.append((self.goal.copy(), self.achieved.copy()))
        return self._observe(obs), reward, terminated, bool(truncated), info

    def report(self) -> dict[str, float]:
        """Success rate, mean goal and mean achieved return of the latest goal episodes (each
        symbol's goal counts once per episode); empty before the first one ends."""
        if not self.outcomes:
            return {}
        goals = np.concatenate([g for g, _ in self.outcomes])
        achieved = np.concatenate([a for _, a in self.outcomes])
        return success_stats(goals, achieved)

    def _observe(self, obs: Any) -> Obs:
        rows = np.asarray(obs, dtype=np.float32).reshape(self.rows, -1)
        time_left = 1.0 - self.steps / self.config.horizon
        view = with_goal(rows, self.goal, self.achieved, time_left)
        return view.reshape(self.observation_space.shape)


def goal_env(env: Any) -> ReturnGoalEnv | None:
    """The ``ReturnGoalEnv`` in ``env``'s chain of wrappers, if there is one."""
    while env is not None:
        if isinstance(env, ReturnGoalEnv):
            return env
        env = getattr(env, "env", None)
    return None
