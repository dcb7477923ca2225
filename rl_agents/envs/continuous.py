"""``ContinuousTradingEnv``: one symbol, ``Box(-1, 1, (1,))`` actions."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from core.bars import BarFrame
from rl_agents.data import load_bars, universe
from rl_agents.envs.config import EnvConfig
from rl_agents.envs.engine import MarketEngine, check_actions, choose_start

Obs = npt.NDArray[np.float32]


def single_symbol_frame(config: EnvConfig, symbol: str | None) -> BarFrame:
    """The config's span of one symbol (the first complete one when None)."""
    frame = load_bars(config.dataset)
    if symbol is None:
        return universe(
            frame, 1, start=config.start, steps=config.steps, min_coverage=config.min_coverage
        )
    stop = (
        frame.n_steps if config.steps is None else min(frame.n_steps, config.start + config.steps)
    )
    one = frame.window(config.start, stop).select([symbol])
    return one.window(0, one.n_steps)


class ContinuousTradingEnv(gym.Env[Obs, npt.NDArray[np.float32]]):
    """One symbol traded under the portfolio manager's rules.

    Action: ``Box(-1, 1, (1,))``; |a| < 0.1 holds, a >= 0.1 buys a of the
    cash, a <= -0.1 sells |a| of the position (after smoothing over the last
    3 actions). Observation: the symbol's feature window plus its position
    share, cash share and unrealised return, ``(window*F + 3,)`` float32.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        config: EnvConfig | None = None,
        frame: BarFrame | None = None,
        symbol: str | None = None,
    ) -> None:
        self.config = config or EnvConfig()
        self.frame = frame if frame is not None else single_symbol_frame(self.config, symbol)
        if self.frame.n_symbols != 1:
            raise ValueError(f"ContinuousTradingEnv trades one symbol, got {self.frame.n_symbols}")
        self.symbol = self.frame.symbols[0]
        self.engine = MarketEngine(self.frame, self.config)
        width = self.engine.obs_width
        self.observation_space = spaces.Box(-5.0, 5.0, (width,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Start an episode; ``options={"start": i}`` picks the first timestamp."""
        super().reset(seed=seed)
        start = choose_start(self.engine, self.np_random, options)
        obs = self.engine.reset(start, self.config.episode_length)
        return obs[0], {"equity": self.engine.equity, "cash": self.engine.cash, "step": start}

    def step(self, action: Any) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Act on the current bar; the order fills at the next bar's open."""
        engine = self.engine
        obs, reward, terminated, truncated = engine.step(check_actions(action, 1))
        info = {"equity": engine.equity, "cash": engine.cash, "step": engine.t}
        return obs[0], reward, terminated, truncated, info
