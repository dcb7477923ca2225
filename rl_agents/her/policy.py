"""The serving side: a checkpoint trained with return goals, served as a ``Policy``.

The symbol agents have no episodes and no rewards, only observations. The
served goal is ``HERConfig.goal``, renewed every ``horizon`` calls; the return
each symbol achieved since is estimated from what consecutive observation rows
carry (``observed_return``), the way the env's reward accrues it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.features import ACCOUNT_FEATURES, FEATURE_NAMES, N_BAR_FEATURES
from rl_agents.her.config import HERConfig
from rl_agents.her.goals import reached, with_goal
from rl_agents.policies import Actions, Observations, Policy


@dataclass(frozen=True, slots=True)
class TradingColumns:
    """Where a trading observation row keeps what the achieved return is estimated from."""

    position_share: int
    """The symbol's position value / equity, after this bar's fills, at its close."""
    gap: int
    """``log(open / previous close)`` of the row's latest bar."""
    body: int
    """``log(close / open)`` of the row's latest bar."""

    @classmethod
    def of_window(cls, window: int) -> TradingColumns:
        """The columns of a row of ``window`` bars of features and the account
        (``core.features.observation``)."""
        latest = (window - 1) * N_BAR_FEATURES
        return cls(
            position_share=window * N_BAR_FEATURES + ACCOUNT_FEATURES.index("position_share"),
            gap=latest + FEATURE_NAMES.index("gap"),
            body=latest + FEATURE_NAMES.index("body"),
        )

    @classmethod
    def of_names(cls, names: Sequence[str]) -> TradingColumns:
        """The columns of the entries named ``position_share``, ``gap[t-0]`` and
        ``body[t-0]`` (a checkpoint's feature names)."""
        try:
            return cls(
                names.index("position_share"), names.index("gap[t-0]"), names.index("body[t-0]")
            )
        except ValueError as e:
            raise ValueError(f"not a trading observation's feature names: {e}") from e

    @classmethod
    def of_width(cls, width: int) -> TradingColumns:
        """The columns of a plain trading row of ``width`` entries (window inferred)."""
        bars, rest = divmod(width - len(ACCOUNT_FEATURES), N_BAR_FEATURES)
        if bars < 1 or rest:
            raise ValueError(
                f"a trading observation has window * {N_BAR_FEATURES} + "
                f"{len(ACCOUNT_FEATURES)} entries, got {width}"
            )
        return cls.of_window(bars)


def observed_return(
    previous: npt.NDArray[Any], rows: npt.NDArray[Any], columns: TradingColumns
) -> npt.NDArray[np.float64]:
    """Each row's share of the step's simple return, from its rows before and after the step.

    The position held at the previous close earns the gap to this bar's open;
    the position after the fills at the open earns the bar's body to its close:
    ``previous_share * (e^gap - 1) + share * (1 - e^-body)``. This is the
    env's ``symbol_rewards`` without the fees and the slippage of the fills.
    """
    before = np.asarray(previous, dtype=np.float64)[:, columns.position_share]
    after = np.asarray(rows, dtype=np.float64)
    gap, body = after[:, columns.gap], after[:, columns.body]
    return before * np.expm1(gap) - after[:, columns.position_share] * np.expm1(-body)


class GoalPolicy:
    """The served policy of a checkpoint trained with return goals.

    Each call gets the rows of the symbols an agent serves, in the same order
    every bar, one call per bar. A goal episode lasts ``horizon`` calls: the
    goal is ``config.goal``, the achieved return of each row starts at 0 and
    accrues ``observed_return`` (its log for a single-symbol checkpoint, whose
    reward was the log change of equity). A call with another number of rows
    starts every symbol afresh.
    """

    def __init__(
        self,
        policy: Policy,
        config: HERConfig,
        *,
        columns: TradingColumns | None = None,
        log_returns: bool = False,
    ) -> None:
        self.inner = policy
        self.config = config
        self.name = policy.name
        self.version = policy.version
        self.columns = columns
        """Where the trading row keeps the account; inferred from the first call when None."""
        self.log_returns = log_returns
        self.achieved: npt.NDArray[np.float64] = np.zeros(0)
        """Each row's return in the current goal episode (estimated)."""
        self.steps = 0
        """Calls of the current goal episode before this one."""
        self._previous: npt.NDArray[np.float32] | None = None
        self.episodes = 0
        """Served goal episodes that ran their ``horizon`` (one per row)."""
        self.successes = 0
        """Those of them whose estimated return reached the goal (``goals.reached``)."""

    def act(self, observations: Observations) -> Actions:
        """One action in [-1, 1] per observation row, conditioned on the served goal."""
        obs = np.asarray(observations, dtype=np.float32)
        if obs.ndim != 2:
            raise ValueError(f"expected observations [n, d], got shape {obs.shape}")
        columns = self.columns or TradingColumns.of_width(obs.shape[1])
        if self._previous is None or self._previous.shape != obs.shape:
            self.achieved, self.steps = np.zeros(len(obs)), 0
        else:
            step = observed_return(self._previous, obs, columns)
            self.achieved += np.log1p(step) if self.log_returns else step
            self.steps += 1
            if self.steps >= self.config.horizon:
                self.episodes += len(obs)
                self.successes += int(reached(self.achieved, self.config.goal).sum())
                self.achieved, self.steps = np.zeros(len(obs)), 0
        self._previous = obs.copy()
        time_left = 1.0 - self.steps / self.config.horizon
        return self.inner.act(with_goal(obs, self.config.goal, self.achieved, time_left))

    def report(self) -> dict[str, float]:
        """The served goal episodes' success rate (``her_served_success_rate``), their count
        and the goal; empty before the first episode ended."""
        if not self.episodes:
            return {}
        return {
            "her_served_success_rate": self.successes / self.episodes,
            "her_served_episodes": float(self.episodes),
            "her_goal": self.config.goal,
        }


def serving_policy(policy: Policy, config: HERConfig) -> GoalPolicy:
    """``policy`` (a served SAC checkpoint trained with return goals) given the served goal.

    The trading columns come from the checkpoint's feature names when it kept
    them, else from the row width; a checkpoint trained on a single symbol
    accrues log returns, a fleet the symbols' shares of the return.
    """
    names: Sequence[str] | None = getattr(policy, "feature_names", None)
    columns = TradingColumns.of_names(names) if names else None
    trained: Any = getattr(policy, "config", None)
    if columns is None and trained is not None and trained.options.enabled:
        raise ValueError(
            "a checkpoint trained with options and return goals needs its feature names to "
            "find the account columns; this one has none"
        )
    single = trained is None or trained.env_type == "continuous"
    return GoalPolicy(policy, config, columns=columns, log_returns=single)
