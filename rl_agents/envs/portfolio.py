"""``PortfolioTradingEnv``: every symbol of a universe at once, one shared cash pool."""

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


def _frame(config: EnvConfig, n_symbols: int) -> BarFrame:
    return universe(
        load_bars(config.dataset),
        n_symbols,
        start=config.start,
        steps=config.steps,
        min_coverage=config.min_coverage,
    )


class PortfolioTradingEnv(gym.Env[Obs, npt.NDArray[np.float32]]):
    """All symbols of a universe (143 by default) trade from one cash pool.

    Actions are ``Box(-1, 1, (n,))``, one per symbol, interpreted exactly as
    the portfolio manager does. The observation is ``(n, window*F + 3)``: row
    i is what symbol i's agent sees (its feature window and its own position,
    the cash share and its unrealised return). The reward is the config's
    reward of the portfolio's equity (log change by default); per-symbol
    fills and P&L are in ``info``: ``info["symbol_rewards"]`` (``[n]``
    float64) splits the step's simple return ``equity / previous_equity - 1``
    into each symbol's share (docs/environments.md).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, config: EnvConfig | None = None, frame: BarFrame | None = None) -> None:
        self.config = config or EnvConfig()
        self.frame = frame if frame is not None else _frame(self.config, self.config.n_symbols)
        self.engine = MarketEngine(self.frame, self.config)
        n, width = self.engine.n, self.engine.obs_width
        self.symbols = self.frame.symbols
        self.observation_space = spaces.Box(-5.0, 5.0, (n, width), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (n,), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Start an episode; ``options={"start": i}`` picks the first timestamp."""
        super().reset(seed=seed)
        start = choose_start(self.engine, self.np_random, options)
        obs = self.engine.reset(start, self.config.episode_length)
        return obs, {"equity": self.engine.equity, "cash": self.engine.cash, "step": start}

    def step(self, action: Any) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Act on every symbol's current bar; fills happen at the next bar's open."""
        engine = self.engine
        obs, reward, terminated, truncated = engine.step(check_actions(action, engine.n))
        info = {
            "equity": engine.equity,
            "cash": engine.cash,
            "step": engine.t,
            "fills": int(np.count_nonzero(engine.quantity)),
            "symbol_rewards": engine.symbol_pnl() / engine.previous_equity,
        }
        return obs, reward, terminated, truncated, info
