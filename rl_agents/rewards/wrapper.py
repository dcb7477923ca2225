"""The gymnasium wrapper that trains an agent on the shaped rewards, and its report."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from rl_agents.envs.engine import MarketEngine
from rl_agents.rewards.config import OBJECTIVES, RewardConfig
from rl_agents.rewards.hacking import HackingMonitor
from rl_agents.rewards.shaper import COMPONENTS, RewardShaper

FloatArray = npt.NDArray[np.float64]


class RewardShapingWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """A trading env whose reward is the shaped one (docs/rewards.md).

    The scalar reward becomes the sum over the symbols of their shaped
    rewards, and a portfolio env's ``info["symbol_rewards"]`` the shaped
    per-symbol rewards. ``info`` gains ``raw_reward`` (the env's own reward),
    ``reward_components`` (each objective's weighted contribution and the
    shaping term, summed over the symbols; they add up to the reward),
    ``reward_weights`` and ``reward_hacking`` (the objectives flagged now).
    """

    def __init__(self, env: gym.Env[Any, Any], config: RewardConfig) -> None:
        super().__init__(env)
        engine = getattr(env.unwrapped, "engine", None)
        if not isinstance(engine, MarketEngine):
            raise TypeError(
                f"reward shaping needs a trading env with a MarketEngine (ContinuousTradingEnv "
                f"or PortfolioTradingEnv), got {type(env.unwrapped).__name__}"
            )
        if not isinstance(env.action_space, spaces.Box) or env.action_space.shape != (engine.n,):
            raise TypeError(
                f"reward shaping reads the raw continuous actions, Box({engine.n},); the env "
                f"takes {env.action_space} (wrap the continuous env, not a discrete view of it)"
            )
        self.config = config
        self.engine = engine
        self.shaper = RewardShaper(engine, config)
        self.monitor = HackingMonitor(COMPONENTS[1:], config.hacking_window, config.hacking_z)
        self._totals = dict.fromkeys(COMPONENTS, 0.0)
        self._magnitudes = dict.fromkeys(COMPONENTS, 0.0)
        self._active = dict.fromkeys(COMPONENTS, 0)
        self._quality = {"entry": [0.0, 0], "exit": [0.0, 0]}
        self._raw_total = self._shaped_total = 0.0
        self._high_steps = self.steps = 0
        self._weights = self.shaper.base.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the env and the shaper's episode (its windows, peak and potential)."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.shaper.reset()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and replace its reward by the shaped one."""
        obs, raw, terminated, truncated, info = self.env.step(action)
        n = self.engine.n
        actions = np.asarray(action, dtype=np.float64).reshape(n)
        portfolio = "symbol_rewards" in info
        returns = np.asarray(info["symbol_rewards"] if portfolio else [float(raw)], np.float64)
        shaped = self.shaper.step(actions, returns, terminated)
        reward = float(shaped.rewards.sum())
        components = dict(zip(COMPONENTS, shaped.contributions.sum(axis=1).tolist(), strict=True))
        flagged = self.monitor.update(list(components.values())[1:], float(raw))
        self._record(components, shaped.contributions, shaped.fill_quality, float(raw), reward)
        self._weights = shaped.weights
        self._high_steps += shaped.high_volatility
        info = {
            **info,
            "raw_reward": float(raw),
            "reward_components": components,
            "reward_weights": dict(zip(OBJECTIVES, shaped.weights.tolist(), strict=True)),
            "reward_hacking": flagged,
        }
        if portfolio:
            info["raw_symbol_rewards"] = returns
            info["symbol_rewards"] = shaped.rewards
        return obs, reward, terminated, truncated, info

    def _record(
        self,
        components: dict[str, float],
        contributions: FloatArray,
        quality: FloatArray,
        raw: float,
        reward: float,
    ) -> None:
        self.steps += 1
        self._raw_total += raw
        self._shaped_total += reward
        active = (contributions != 0.0).any(axis=1).tolist()
        magnitudes = np.abs(contributions).sum(axis=1).tolist()
        for (name, value), on, size in zip(components.items(), active, magnitudes, strict=True):
            self._totals[name] += value
            self._active[name] += on
            self._magnitudes[name] += size
        fills = self.engine.quantity
        for kind, mask in (("entry", fills > 0.0), ("exit", fills < 0.0)):
            self._quality[kind][0] += float(quality[mask].sum())
            self._quality[kind][1] += int(mask.sum())

    def report(self) -> dict[str, float]:
        """Running means per step since the wrapper was made, the current weights, their
        spread over the current episode and the largest over every episode (the
        weight stability), and the hacking flags (docs/rewards.md)."""
        steps = max(self.steps, 1)
        out: dict[str, float] = {"steps": float(self.steps)}
        for name in COMPONENTS:
            out[f"{name}_mean"] = self._totals[name] / steps
            out[f"{name}_active"] = self._active[name] / steps
        out["raw_reward_mean"] = self._raw_total / steps
        out["shaped_reward_mean"] = self._shaped_total / steps
        magnitude = sum(self._magnitudes.values())
        out["shaping_share"] = self._magnitudes["shaping"] / magnitude if magnitude else 0.0
        tracker = self.shaper.tracker
        spread, worst = tracker.spread(), tracker.worst_spread()
        for name, weight, s, w in zip(OBJECTIVES, self._weights, spread, worst, strict=True):
            out[f"{name}_weight"] = float(weight)
            out[f"{name}_weight_spread"] = float(s)
            out[f"{name}_weight_worst_spread"] = float(w)
        out["weight_stability"] = float(worst.max())
        out["weight_episodes"] = float(tracker.episodes)
        out["high_volatility_share"] = self._high_steps / steps
        for kind, (total, count) in self._quality.items():
            out[f"{kind}_quality"] = total / count if count else float("nan")
        monitor = self.monitor
        for name in monitor.names:
            out[f"{name}_hacking"] = float(name in monitor.flagged)
            out[f"{name}_hacking_steps"] = float(monitor.flagged_steps[name])
        out["hacking_flags"] = float(len(monitor.first_flagged))
        return out
