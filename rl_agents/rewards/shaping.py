"""Potential-based reward shaping (Ng, Harada and Russell 1999).

Adding ``F(s, s') = gamma * phi(s') - phi(s)`` to every reward of an MDP, for
any function ``phi`` of the state, leaves its optimal policies unchanged:
the shaped optimal Q-function is the original one minus ``phi(s)``. A
terminal state's potential is taken as 0, as the proof needs for episodes
that end (a truncated episode is not terminal: its next state keeps its
potential, and SAC bootstraps through it). ``potential_shaping`` works on
arrays of any shape that broadcast, so the small MDP of the tests and the
trading wrapper run the same function.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def potential_shaping(
    phi: npt.ArrayLike, phi_next: npt.ArrayLike, gamma: float, terminated: Any = False
) -> FloatArray:
    """``F = gamma * phi(s') - phi(s)``, with ``phi(s') = 0`` where ``terminated``."""
    next_value = np.where(terminated, 0.0, np.asarray(phi_next, dtype=np.float64))
    return gamma * next_value - np.asarray(phi, dtype=np.float64)


def trading_potential(
    unrealised: FloatArray, exposure: FloatArray, trend: FloatArray, trend_weight: float
) -> FloatArray:
    """The potential of each symbol's state, in units of return: its unrealised P&L as a
    share of equity, plus ``trend_weight`` times its exposure times the recent trend (the
    window's log return): a position that rides a rising trend is worth more."""
    return unrealised + trend_weight * exposure * trend
