"""``OptionsController``: the options' state of a book of symbols and what they did.

The one place that runs ``observe`` and ``decide`` (``rl_agents.options.options``)
in order: the training wrapper and the serving policy both hold one, so a
checkpoint is served with exactly the option logic it was trained with.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rl_agents.options.config import OptionsConfig
from rl_agents.options.options import (
    N_OPTIONS,
    NONE,
    Decided,
    Observed,
    Option,
    OptionState,
    decide,
    observe,
)


class OptionStats:
    """Usage and persistence of the options over the steps a controller ran.

    Usage is the share of symbol-steps each option acted on; persistence is the
    mean length in steps of each option's runs, a run ending at its termination,
    its timeout or the end of an episode (``close``).
    """

    def __init__(self) -> None:
        self.steps = np.zeros(N_OPTIONS, dtype=np.int64)
        """Symbol-steps each option acted on."""
        self.runs = np.zeros(N_OPTIONS, dtype=np.int64)
        """Finished runs of each option."""
        self.run_steps = np.zeros(N_OPTIONS, dtype=np.int64)
        """Summed length of those runs."""
        self.choices = 0
        """Times the agent's action chose an option."""
        self.fallbacks = 0
        """Choices whose option could not start (wait ran instead)."""

    def ended(self, options: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> None:
        """Count the runs that ended (``options`` ``NONE`` where none did) and their lengths."""
        done = options != NONE
        np.add.at(self.runs, options[done], 1)
        np.add.at(self.run_steps, options[done], lengths[done])

    def decided(self, decided: Decided) -> None:
        """Count one step of every symbol's option, and the choices made."""
        self.steps += np.bincount(decided.state.option, minlength=N_OPTIONS)
        self.choices += int(decided.chosen.sum())
        self.fallbacks += int(decided.fallback.sum())

    def to_dict(self) -> dict[str, float]:
        """``usage/<option>``, ``persistence/<option>`` (0 for an option that never ran),
        ``persistence/mean`` over all runs, ``fallback_share`` and ``choices``."""
        total = max(int(self.steps.sum()), 1)
        out: dict[str, float] = {}
        for option in Option:
            out[f"usage/{option.label}"] = float(self.steps[option]) / total
        for option in Option:
            runs, steps = int(self.runs[option]), float(self.run_steps[option])
            out[f"persistence/{option.label}"] = steps / runs if runs else 0.0
        all_runs = int(self.runs.sum())
        out["persistence/mean"] = float(self.run_steps.sum()) / all_runs if all_runs else 0.0
        out["fallback_share"] = self.fallbacks / self.choices if self.choices else 0.0
        out["choices"] = float(self.choices)
        return out


class OptionsController:
    """The options of ``n`` symbols: ``observe`` a bar's rows, then ``act`` on the agent's
    choices for them; ``reset`` at the end of an episode."""

    def __init__(self, config: OptionsConfig, n: int) -> None:
        self.config = config
        self.state = OptionState.empty(n)
        self.stats = OptionStats()
        self._observed: Observed | None = None
        self._observations: npt.NDArray[np.float32] | None = None

    @property
    def n(self) -> int:
        """Symbols controlled."""
        return self.state.n

    def observe(self, observations: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """End the options that terminate on these rows ``[n, d]``; return the agent's view
        ``[n, d + 6]`` (the running option one-hot, all zero where the agent chooses now)."""
        obs = np.asarray(observations, dtype=np.float32)
        observed = observe(self.state, obs, self.config)
        self.stats.ended(observed.ended, observed.lengths)
        self.state, self._observed, self._observations = observed.state, observed, obs
        return observed.augmented

    def act(self, choices: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The trade actions ``[n]`` for the rows last observed, given the agent's actions
        on their augmented view (used only where no option runs)."""
        if self._observed is None or self._observations is None:
            raise RuntimeError("observe() the rows before act() on them")
        decided = decide(self.state, self._observations, choices, self.config)
        self.stats.decided(decided)
        self.state, self._observed, self._observations = decided.state, None, None
        return decided.actions

    @property
    def running(self) -> npt.NDArray[np.int64]:
        """The option each symbol runs (``NONE``: none)."""
        return self.state.option.copy()

    def reset(self) -> None:
        """End every running option (its run counts as cut by the episode's end)."""
        self.stats.ended(self.state.option, self.state.elapsed)
        self.state = OptionState.empty(self.n)
        self._observed = self._observations = None
