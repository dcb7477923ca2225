"""The market engine behind every environment: a replay of a ``BarFrame`` on arrays.

Each step is one call of ``core.simulation.advance``, the same rules the
portfolio manager applies to events. The features of the whole span are
computed once at construction (``core.features.window_features``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from core.actions import SmoothingState
from core.bars import BarFrame
from core.execution import kernel_rules, mark_equity
from core.features import ACCOUNT_FEATURES, N_BAR_FEATURES, account_into, window_features
from core.simulation import advance
from rl_agents.envs.config import EnvConfig

FloatArray = npt.NDArray[np.float64]


class EnvDataError(ValueError):
    """Data an environment cannot run on."""


class MarketEngine:
    """Replays a frame for a book of ``n`` symbols under the trading rules."""

    def __init__(self, frame: BarFrame, config: EnvConfig) -> None:
        frame.validate()
        if frame.n_steps < 2:
            raise EnvDataError(f"{frame.source}: needs at least 2 timestamps, has {frame.n_steps}")
        if not frame.present.any(axis=1).all():
            raise EnvDataError(f"{frame.source}: a timestamp without any bar (use frame.window)")
        self.frame = frame
        self.config = config
        self.n = frame.n_symbols
        self.present = np.ascontiguousarray(frame.present)
        self.open = np.ascontiguousarray(frame.open)
        self.close = np.ascontiguousarray(frame.close)
        self.features = window_features(
            open_px=frame.open,
            high=frame.high,
            low=frame.low,
            close=frame.close,
            volume=frame.volume,
            present=frame.present,
            window=config.window,
        )
        self.obs_width = config.window * N_BAR_FEATURES + len(ACCOUNT_FEATURES)
        self._rules = kernel_rules(config.rules)
        n = self.n
        self.smoothing = SmoothingState.empty(n, config.rules.smoothing_window)
        self.smoothed = np.zeros(n)
        self.position = np.zeros(n)
        self.cost = np.zeros(n)
        self.last_close = np.full(n, np.nan)
        self.kind = np.zeros(n, dtype=np.int8)
        self.quantity = np.zeros(n)
        self.price = np.zeros(n)
        self.notional = np.zeros(n)
        self.fee = np.zeros(n)
        self.requested = np.zeros(n)
        self.skip = np.zeros(n, dtype=np.int8)
        self.clip = np.zeros(n, dtype=np.int8)
        self.realized = np.zeros(n)
        self.value = np.zeros(n)
        """Each symbol's position marked at its last close (0 where none is held)."""
        self.value_before = np.zeros(n)
        """``value`` before the last step, at the previous marks."""
        self.observation = np.zeros((n, self.obs_width), dtype=np.float32)
        self.cash = config.rules.initial_cash
        self.equity = self.cash
        self.previous_equity = self.cash
        """Equity before the last step."""
        self._ruin = config.ruin_fraction * config.rules.initial_cash
        self.t = 0
        self.end = 0
        self.done = True

    @property
    def last_step(self) -> int:
        """Index of the last timestamp of the frame."""
        return self.frame.n_steps - 1

    def reset(self, start: int, length: int | None) -> npt.NDArray[np.float32]:
        """Start an episode at timestamp ``start`` for ``length`` steps (to the end when None)."""
        if not 0 <= start < self.last_step:
            raise EnvDataError(f"start {start} must be in [0, {self.last_step})")
        self.t = start
        self.done = False
        self.end = self.last_step if length is None else min(self.last_step, start + length)
        self.smoothing.history[:] = 0.0
        self.smoothing.count[:] = 0
        self.position[:] = 0.0
        self.cost[:] = 0.0
        self.last_close[:] = np.where(self.present[start], self.close[start], np.nan)
        self.cash = self.config.rules.initial_cash
        self.equity = mark_equity(self.cash, self.position, self.last_close)
        self.previous_equity = self.equity
        self._mark_values()
        self.value_before[:] = self.value
        width = self.features.shape[2]
        self.observation[:, :width] = self.features[start]
        account_into(
            self.position,
            self.last_close,
            self.cost,
            self.cash,
            self.equity,
            self.observation,
            width,
        )
        return self.observation.copy()

    def step(self, raw: FloatArray) -> tuple[npt.NDArray[np.float32], float, bool, bool]:
        """Decide on the current bar with ``raw``; return (observation, reward, terminated,
        truncated) of the next bar."""
        if self.done:
            raise RuntimeError("the episode is over: call reset() before step()")
        previous = self.previous_equity = self.equity
        self.value, self.value_before = self.value_before, self.value
        self.cash, self.equity = advance(
            raw, self.t, self.present, self.open, self.close, self.features,
            self.smoothing.history, self.smoothing.count, self.smoothed,
            self.position, self.cost, self.last_close, self.cash, *self._rules,
            self.kind, self.quantity, self.price, self.notional, self.fee,
            self.requested, self.skip, self.clip, self.realized, self.observation,
        )  # fmt: skip
        self._mark_values()
        self.t += 1
        terminated = self.equity < self._ruin
        truncated = self.t >= self.end
        self.done = terminated or truncated
        return (
            self.observation.copy(),
            float(self.config.reward(previous, self.equity)),
            terminated,
            truncated,
        )

    def symbol_pnl(self) -> FloatArray:
        """Each symbol's share of the last step's equity change, in dollars (a new array).

        For symbol i: its position value at the new marks, minus its value
        before the step at the previous marks, plus the cash its fills moved
        (sell notional in, buy notional out, fees out). The shares sum to
        ``equity - previous_equity`` up to rounding: cash moves only by fills.
        """
        pnl = self.value - self.value_before
        pnl -= np.copysign(self.notional, self.quantity)  # quantity: buy > 0, sell < 0, else 0
        pnl -= self.fee
        return pnl

    def _mark_values(self) -> None:
        # A symbol never held may have no close yet (NaN): fmax turns its 0 * NaN into 0.
        np.multiply(self.position, self.last_close, out=self.value)
        np.fmax(self.value, 0.0, out=self.value)


def check_actions(action: object, n: int) -> FloatArray:
    """Actions as ``[n]`` float64; a wrong shape or a non-finite value is a clear error.

    Checked before the kernel runs, which would otherwise have pushed the
    actions of the symbols before a NaN into their smoothing history.
    """
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (n,):
        if a.size != n:
            raise ValueError(f"expected {n} action value(s), got shape {a.shape}")
        a = a.reshape(n)
    if not np.isfinite(a).all():
        raise ValueError(f"actions must be finite numbers, got {a[~np.isfinite(a)]}")
    return a


def choose_start(
    engine: MarketEngine, rng: np.random.Generator, options: dict[str, Any] | None
) -> int:
    """The first timestamp of an episode: ``options["start"]``, else 0, else random.

    With an ``episode_length`` shorter than the data the start is drawn from
    the env's seeded generator, so ``reset(seed=s)`` always gives the same episode.
    """
    if options and "start" in options:
        return int(options["start"])
    length = engine.config.episode_length
    if length is None or length >= engine.last_step:
        return 0
    return int(rng.integers(0, engine.last_step - length + 1))
