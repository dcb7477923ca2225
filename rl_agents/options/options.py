"""The five trading options of phase B and their step, in plain numpy over symbols.

An option is an initiation set, an intra-option policy and a termination
condition, each read from a symbol's observation row (``core.features``: the
feature window, oldest bar first, then position share, cash share and
unrealised return). ``OptionState`` holds what each symbol is running;
``observe`` ends the options whose termination holds on a new observation and
gives the observation the agent sees, ``decide`` starts the option the agent
chose where none runs and returns the trade actions. Training
(``rl_agents.options.wrapper``) and serving (``rl_agents.options.policy``) call
exactly these two, in this order, through ``OptionsController``
(docs/options.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from core.features import ACCOUNT_FEATURES, FEATURE_NAMES, N_BAR_FEATURES
from rl_agents.options.config import OptionsConfig

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


class Option(IntEnum):
    """The options, numbered in the order of the agent's action bins (-1 to 1)."""

    CLOSE_POSITION = 0
    SCALP = 1
    WAIT = 2
    TREND_FOLLOW = 3
    OPEN_LONG = 4

    @property
    def label(self) -> str:
        """Lower-case name used in reports."""
        return self.name.lower()


N_OPTIONS = len(Option)
NONE = -1
"""``OptionState.option`` of a symbol that runs no option: the agent chooses at this step."""
OPEN_SCHEDULE = (0.3, 0.5, 0.7)
"""Open-long's buys by elapsed step (the plan's progressive buy); the last one repeats."""
AUGMENTED_FEATURES = (*(f"option_{o.label}" for o in Option), "option_elapsed")
"""What the options add to each observation row: the running option one-hot (all zero
when the agent chooses at this step) and its elapsed steps over the timeout."""

_RETURN = FEATURE_NAMES.index("log_return")
_RANGE = FEATURE_NAMES.index("range")
_TREND = FEATURE_NAMES.index("trend_10")
_ACCOUNT = len(ACCOUNT_FEATURES)


@dataclass(frozen=True, slots=True)
class Signals:
    """What the options read from observation rows ``[n, d]``, one value per symbol."""

    position: FloatArray
    """Position value / equity."""
    unrealized: FloatArray
    """Unrealised return of the position."""
    last_return: FloatArray
    """Log return of the last bar."""
    strength: FloatArray
    """Trend strength: the last bar's trend_10 over the window's mean bar range (0 when the
    window has no range)."""
    previous_strength: FloatArray
    """The same one bar earlier (0 with a one-bar window)."""
    volatility: FloatArray
    """The last bar's range over the window's mean bar range (0 when it has no range)."""
    previous_volatility: FloatArray
    """The same one bar earlier (0 with a one-bar window)."""

    @classmethod
    def of(cls, observations: npt.ArrayLike) -> Signals:
        """The signals of observation rows ``[n, window * F + 3]``."""
        obs = np.asarray(observations, dtype=np.float64)
        if obs.ndim != 2:
            raise ValueError(f"expected observation rows [n, d], got shape {obs.shape}")
        window = bar_window(obs.shape[1])
        bars = obs[:, : window * N_BAR_FEATURES].reshape(len(obs), window, N_BAR_FEATURES)
        mean_range = bars[:, :, _RANGE].mean(axis=1)
        scale = np.where(mean_range > 0.0, mean_range, np.inf)  # x / inf = 0: no signal
        previous = bars[:, -2] if window > 1 else np.zeros_like(bars[:, -1])
        return cls(
            position=obs[:, -_ACCOUNT],
            unrealized=obs[:, -1],
            last_return=bars[:, -1, _RETURN],
            strength=bars[:, -1, _TREND] / scale,
            previous_strength=previous[:, _TREND] / scale,
            volatility=bars[:, -1, _RANGE] / scale,
            previous_volatility=previous[:, _RANGE] / scale,
        )


def bar_window(width: int) -> int:
    """Bars in an observation row of ``width`` entries; a clear error for other widths."""
    window, rest = divmod(width - _ACCOUNT, N_BAR_FEATURES)
    if width <= _ACCOUNT or rest:
        raise ValueError(
            f"an observation row of {width} entries is not a trading observation "
            f"(window * {N_BAR_FEATURES} bar features + {_ACCOUNT} account features)"
        )
    return window


@dataclass(frozen=True, slots=True)
class OptionState:
    """The option each symbol runs (``NONE``: none), its elapsed steps and its anchor."""

    option: IntArray
    elapsed: IntArray
    """Steps the running option has acted (0 where none runs)."""
    anchor: FloatArray
    """Trend strength when the running option started (trend-follow's reference)."""

    @classmethod
    def empty(cls, n: int) -> OptionState:
        """No option running for any of ``n`` symbols."""
        return cls(np.full(n, NONE, dtype=np.int64), np.zeros(n, np.int64), np.zeros(n))

    @property
    def n(self) -> int:
        """Symbols tracked."""
        return len(self.option)


def initiation(signals: Signals, config: OptionsConfig) -> npt.NDArray[np.bool_]:
    """Where each option may start, ``[n, N_OPTIONS]`` (wait always may)."""
    flat = signals.position <= config.flat_share
    can = np.empty((len(flat), N_OPTIONS), dtype=np.bool_)
    can[:, Option.CLOSE_POSITION] = ~flat
    can[:, Option.SCALP] = signals.volatility >= config.volatility_ratio
    can[:, Option.WAIT] = True
    can[:, Option.TREND_FOLLOW] = signals.strength >= config.trend_strength
    can[:, Option.OPEN_LONG] = flat
    return can


def termination(state: OptionState, signals: Signals, config: OptionsConfig) -> BoolArray:
    """Where the running option ends on these signals: its own condition or the timeout."""
    option, elapsed = state.option, state.elapsed
    trend = signals.strength >= config.trend_strength
    volatile = signals.volatility >= config.volatility_ratio
    was_signal = (signals.previous_strength >= config.trend_strength) | (
        signals.previous_volatility >= config.volatility_ratio
    )
    ends = np.select(
        [
            option == Option.CLOSE_POSITION,
            option == Option.SCALP,
            option == Option.WAIT,
            option == Option.TREND_FOLLOW,
            option == Option.OPEN_LONG,
        ],
        [
            signals.position <= config.flat_share,
            (elapsed >= config.scalp_steps)
            | ((signals.position > config.flat_share)
               & (signals.unrealized >= config.profit_target)),
            (trend | volatile) & ~was_signal,
            signals.strength < config.trend_fade * state.anchor,
            (signals.position > config.target_position) | (elapsed >= config.open_steps),
        ],
        default=False,
    )  # fmt: skip
    return (option != NONE) & (ends | (elapsed >= config.timeout))


def intra_option(state: OptionState, signals: Signals, config: OptionsConfig) -> FloatArray:
    """The trade action of each symbol's running option (0, a hold, where none runs)."""
    option, elapsed = state.option, state.elapsed
    schedule = np.asarray(OPEN_SCHEDULE)[np.minimum(elapsed, len(OPEN_SCHEDULE) - 1)]
    sell = np.clip(
        config.close_fraction - config.close_pnl_gain * signals.unrealized,
        config.close_fraction / 2.0,
        1.0,
    )
    scalp = np.where(signals.last_return < 0.0, config.scalp_size, -config.scalp_size)
    add = np.where(signals.strength >= state.anchor, config.trend_add, 0.0)
    action = np.select(
        [
            option == Option.CLOSE_POSITION,
            option == Option.SCALP,
            option == Option.TREND_FOLLOW,
            option == Option.OPEN_LONG,
        ],
        [-sell, scalp, add, schedule],
        default=0.0,
    )
    return np.asarray(action, dtype=np.float64)


def choose(choices: npt.ArrayLike) -> IntArray:
    """The option each agent action in [-1, 1] picks: five equal bins, CLOSE_POSITION lowest."""
    a = np.clip(np.asarray(choices, dtype=np.float64).reshape(-1), -1.0, 1.0)
    return np.minimum(((a + 1.0) / 2.0 * N_OPTIONS).astype(np.int64), N_OPTIONS - 1)


@dataclass(frozen=True, slots=True)
class Observed:
    """What ``observe`` found: the state with the ended options cleared, and what ended."""

    state: OptionState
    augmented: npt.NDArray[np.float32]
    """The observation rows with ``AUGMENTED_FEATURES`` appended: what the agent sees."""
    ended: IntArray
    """The option that ended at each symbol (``NONE`` where none did)."""
    lengths: IntArray
    """Its elapsed steps (0 where none ended)."""


@dataclass(frozen=True, slots=True)
class Decided:
    """What ``decide`` did: the new state, the trade actions and the options chosen."""

    state: OptionState
    actions: FloatArray
    """The running options' trade actions in [-1, 1], one per symbol."""
    chosen: BoolArray
    """Where the agent's action chose an option at this step."""
    fallback: BoolArray
    """Where the chosen option could not start and wait ran instead."""


def observe(state: OptionState, observations: npt.ArrayLike, config: OptionsConfig) -> Observed:
    """End the options whose termination holds on ``observations``; augment them."""
    obs = np.asarray(observations, dtype=np.float32)
    _check_rows(state, obs)
    signals = Signals.of(obs)
    ends = termination(state, signals, config)
    ended = np.where(ends, state.option, NONE)
    lengths = np.where(ends, state.elapsed, 0)
    state = OptionState(
        np.where(ends, NONE, state.option),
        np.where(ends, 0, state.elapsed),
        np.where(ends, 0.0, state.anchor),
    )
    return Observed(state, augment(obs, state, config), ended, lengths)


def decide(
    state: OptionState, observations: npt.ArrayLike, choices: npt.ArrayLike, config: OptionsConfig
) -> Decided:
    """Start the option ``choices`` pick where none runs (wait when it cannot start), then act.

    ``state`` is ``observe``'s state for the same ``observations``; ``choices``
    (the agent's actions on the augmented rows, one per symbol) are ignored
    where an option is running.
    """
    obs = np.asarray(observations, dtype=np.float32)
    _check_rows(state, obs)
    picked = choose(choices)
    if picked.shape != (state.n,):
        raise ValueError(f"expected {state.n} choices, got {picked.shape[0]}")
    signals = Signals.of(obs)
    chosen = state.option == NONE
    allowed = initiation(signals, config)[np.arange(state.n), picked]
    started = np.where(allowed, picked, int(Option.WAIT))
    option = np.where(chosen, started, state.option)
    anchor = np.where(chosen, signals.strength, state.anchor)
    acting = OptionState(option, state.elapsed, anchor)
    actions = intra_option(acting, signals, config)
    after = OptionState(option, state.elapsed + 1, anchor)
    return Decided(after, actions, chosen, chosen & ~allowed)


def augment(
    observations: npt.ArrayLike, state: OptionState, config: OptionsConfig
) -> npt.NDArray[np.float32]:
    """Observation rows with the running option one-hot and its elapsed share appended."""
    obs = np.asarray(observations, dtype=np.float32)
    extra = np.zeros((state.n, len(AUGMENTED_FEATURES)), dtype=np.float32)
    running = state.option != NONE
    extra[np.flatnonzero(running), state.option[running]] = 1.0
    extra[:, -1] = np.minimum(state.elapsed / config.timeout, 1.0)
    return np.concatenate([obs, extra], axis=1)


def _check_rows(state: OptionState, obs: npt.NDArray[np.float32]) -> None:
    if obs.ndim != 2 or obs.shape[0] != state.n:
        raise ValueError(f"expected observation rows [{state.n}, d], got shape {obs.shape}")


def augment_space(space: spaces.Box) -> spaces.Box:
    """The observation space of rows ``augment`` returns: ``space`` with one entry in [0, 1]
    per ``AUGMENTED_FEATURES`` appended to its last axis."""
    if not isinstance(space, spaces.Box) or len(space.shape) not in (1, 2):
        raise ValueError(f"options need a Box of observations (d,) or (n, d), got {space}")
    extra = (*space.shape[:-1], len(AUGMENTED_FEATURES))
    low = np.concatenate([space.low, np.zeros(extra, space.dtype)], axis=-1)
    high = np.concatenate([space.high, np.ones(extra, space.dtype)], axis=-1)
    return spaces.Box(low, high, low.shape, dtype=space.dtype)
