"""Return goals: the goal features of an observation row, success and the goal reward.

Every row a goal-conditioned policy sees ends with ``GOAL_FEATURES``: the
return goal, the return achieved so far in the goal episode and the share of
the goal's horizon still left. Training (``ReturnGoalEnv``), relabelling
(``HERBuffer``) and serving (``GoalPolicy``) all build and read these columns
here, and all judge success and reward with ``reached`` and ``goal_reward``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from rl_agents.her.config import GOAL_LIMIT

GOAL_FEATURES = ("her_goal", "her_achieved", "her_time_left")
"""Names of the entries appended to each observation row, in order."""
GOAL = -3
"""Column of the goal in a goal-conditioned row."""
ACHIEVED = -2
"""Column of the return achieved so far."""
TIME_LEFT = -1
"""Column of the share of the horizon left (1 at the start, 0 at the end)."""

FloatArray = npt.NDArray[np.float64]


def reached(achieved: npt.ArrayLike, goal: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Where the achieved return is at or above the goal: the one test of success."""
    return np.greater_equal(achieved, goal)


def goal_reward(
    extrinsic: npt.ArrayLike, achieved: npt.ArrayLike, goal: npt.ArrayLike, penalty: float
) -> FloatArray:
    """``extrinsic - penalty`` where the return achieved after the step is below the goal,
    ``extrinsic`` where it reached it (arrays broadcast; the result is float64).

    The extrinsic term keeps the step's profit in every reward, so among the ways
    of reaching a goal the policy prefers the one that makes more money; the
    penalty makes each step spent below the goal cost, so reaching it sooner and
    staying above it pays (docs/her.md).
    """
    missed = ~reached(achieved, goal)
    return np.asarray(extrinsic, dtype=np.float64) - penalty * missed


def training_space(space: spaces.Box) -> spaces.Box:
    """The observation space of a goal-conditioned policy whose serving rows are ``space``:
    ``(..., d)`` becomes ``(..., d + 3)``, the goal features last."""
    if not isinstance(space, spaces.Box) or len(space.shape) not in (1, 2):
        raise ValueError(f"return goals need Box observations (d,) or (n, d), got {space}")
    lead = space.shape[:-1]
    low = np.broadcast_to(np.array([-GOAL_LIMIT, -GOAL_LIMIT, 0.0]), (*lead, 3))
    high = np.broadcast_to(np.array([GOAL_LIMIT, GOAL_LIMIT, 1.0]), (*lead, 3))
    return spaces.Box(
        np.concatenate([space.low, low], axis=-1).astype(space.dtype),
        np.concatenate([space.high, high], axis=-1).astype(space.dtype),
        dtype=space.dtype,
    )


def with_goal(
    rows: npt.ArrayLike, goal: npt.ArrayLike, achieved: npt.ArrayLike, time_left: float
) -> npt.NDArray[np.float32]:
    """``rows [n, d]`` with the goal features appended: ``[n, d + 3]`` float32 (the achieved
    return clipped to +-GOAL_LIMIT, like every feature)."""
    obs = np.asarray(rows, dtype=np.float32)
    n = obs.shape[0]
    features = np.empty((n, len(GOAL_FEATURES)), dtype=np.float32)
    features[:, GOAL] = np.broadcast_to(goal, n)
    features[:, ACHIEVED] = np.clip(np.broadcast_to(achieved, n), -GOAL_LIMIT, GOAL_LIMIT)
    features[:, TIME_LEFT] = time_left
    return np.concatenate([obs, features], axis=1)


def success_stats(goals: Any, achieved: Any) -> dict[str, float]:
    """Success rate, mean goal and mean achieved return of finished goal episodes (one entry
    per episode and symbol); empty when there are none."""
    g = np.asarray(goals, dtype=np.float64).reshape(-1)
    a = np.asarray(achieved, dtype=np.float64).reshape(-1)
    if g.shape != a.shape:
        raise ValueError(f"{g.size} goals for {a.size} achieved returns")
    if g.size == 0:
        return {}
    return {
        "her_success_rate": float(reached(a, g).mean()),
        "her_goal_mean": float(g.mean()),
        "her_achieved_mean": float(a.mean()),
        "her_episodes": float(g.size),
    }
