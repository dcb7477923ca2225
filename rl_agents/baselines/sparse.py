"""Sparse completed-trade rewards: paid only when a position is reduced or closed.

The original discrete fleet learned from completed trades only: a step
earned nothing unless it sold, and then the realised profit or loss of what
it sold (the plan's lessons: "sparse rewards create learning deserts ... the
agent only learns from completed trades"; docs/collapse.md). The wrapper
``CompletedTradeReward`` replaces the reward of any environment of
``rl_agents.envs`` whose unwrapped env has a ``MarketEngine`` (``.engine``),
in one of two readings of a completed trade:

- ``completed-trades`` (``pay_on="reduce"``): every sell that fills pays the
  realised P&L of the shares it sold, net of fees: its notional, less its
  fee, less their share of the cost basis (which holds the buys' notional and
  the buys' fees);
- ``round-trips`` (``pay_on="close"``): only a sell that closes the position
  pays, and it pays the realised P&L of the whole trade, every reduction
  since the position was opened, fees included.

Every other step earns exactly 0: holding (whatever the price did), buying,
an order refused or skipped. Rewards are divided by the initial cash, so an
episode's rewards sum to its realised P&L as a share of the starting book
(the default dense reward sums to the log of the equity's change, so the two
are on the same scale). What is still held when the episode ends earns
nothing: an open position is not a completed trade. Observations,
termination and ``info`` are the wrapped env's, with the step's realised P&L
in dollars as ``info["realized_pnl"]`` (a sell's, whether paid now or not).
"""

from __future__ import annotations

from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from rl_agents.envs.engine import MarketEngine

LOG_EQUITY = "log-equity"
"""``PPOBaselineConfig.reward`` (``--reward``) of the envs' default dense reward."""
COMPLETED_TRADES = "completed-trades"
"""The reward paid on every reduction of a position (``pay_on="reduce"``)."""
ROUND_TRIPS = "round-trips"
"""The reward paid when a position is closed in full (``pay_on="close"``)."""
REWARDS = (LOG_EQUITY, COMPLETED_TRADES, ROUND_TRIPS)
"""The rewards the discrete baseline can train with."""
PayOn = Literal["reduce", "close"]
PAY_ON: dict[str, PayOn] = {COMPLETED_TRADES: "reduce", ROUND_TRIPS: "close"}
"""``pay_on`` of each sparse reward's name."""


def engine_of(env: gym.Env[Any, Any]) -> MarketEngine:
    """The market engine under ``env``'s wrappers (the one trading now)."""
    engine = getattr(env.unwrapped, "engine", None)
    if not isinstance(engine, MarketEngine):
        raise TypeError(f"{env.unwrapped} has no MarketEngine (.engine) to read fills from")
    return engine


class CompletedTradeReward(gym.Wrapper[Any, Any, Any, Any]):
    """The wrapped env with its reward replaced by the realised P&L of completed trades."""

    def __init__(self, env: gym.Env[Any, Any], pay_on: PayOn = "reduce") -> None:
        super().__init__(env)
        if pay_on not in ("reduce", "close"):
            raise ValueError(f"pay_on must be 'reduce' or 'close', got {pay_on!r}")
        self.pay_on = pay_on
        self._open_pnl: npt.NDArray[np.float64] = np.zeros(engine_of(env).n)
        """Per symbol: P&L realised by the reductions of the open trade, not yet paid."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode from a flat book: nothing realised is carried over."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._open_pnl = np.zeros(engine_of(self.env).n)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the wrapped env; the reward is the P&L completed by this step / initial cash."""
        obs, _, terminated, truncated, info = self.env.step(action)
        engine = engine_of(self.env)  # after the step: a rotation env swaps engines on reset
        realized = engine.realized
        if self.pay_on == "reduce":
            paid = float(np.sum(realized))
        else:
            self._open_pnl += realized
            closed = (engine.quantity < 0.0) & (engine.position == 0.0)
            paid = float(np.sum(self._open_pnl[closed]))
            self._open_pnl[closed] = 0.0
        reward = paid / engine.config.rules.initial_cash
        return obs, reward, terminated, truncated, {**info, "realized_pnl": float(realized.sum())}


def with_reward(env: gym.Env[Any, Any], reward: str) -> gym.Env[Any, Any]:
    """``env`` trained with the reward named ``reward`` (``REWARDS``)."""
    if reward == LOG_EQUITY:
        return env
    if reward not in PAY_ON:
        raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")
    return CompletedTradeReward(env, PAY_ON[reward])
