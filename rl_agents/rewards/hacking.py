"""Reward hacking: an objective that pays more and more while the real return falls.

Over the last ``window`` steps the monitor sums each objective's weighted
contribution and the unshaped reward. An objective is flagged when its sum
is above ``z`` standard errors of zero while the return's sum is below ``-z``
of its own (the standard error of a sum of W steps being the steps'
standard deviation times sqrt(W); a constant series has none, so any sum of
it counts). A flag lasts while the condition holds; the first flag of each
objective is logged as a warning, and every flag is in the env's ``info``
and in ``rl_agents.rewards.report``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

log = logging.getLogger(__name__)


class HackingMonitor:
    """Flags the objectives whose contribution rose while the unshaped return fell."""

    def __init__(self, names: Sequence[str], window: int, z: float) -> None:
        if window < 2:
            raise ValueError(f"the hacking window must be >= 2 steps, got {window}")
        self.names = tuple(names)
        self.window = window
        self.z = z
        self._contributions = np.zeros((window, len(self.names)))
        self._raw = np.zeros(window)
        self.steps = 0
        """Steps seen."""
        self.flagged: tuple[str, ...] = ()
        """The objectives flagged at the last step."""
        self.first_flagged: dict[str, int] = {}
        """Each objective ever flagged and the step of its first flag."""
        self.flagged_steps = dict.fromkeys(self.names, 0)
        """Steps each objective was flagged at."""
        self.sums = np.zeros(len(self.names))
        """The objectives' contributions summed over the last window."""
        self.raw_sum = 0.0
        """The unshaped reward summed over the last window."""

    def update(self, contributions: Sequence[float] | FloatArray, raw: float) -> tuple[str, ...]:
        """Add one step (each objective's contribution, the unshaped reward); return the
        objectives flagged now."""
        row = self.steps % self.window
        self._contributions[row] = contributions
        self._raw[row] = raw
        self.steps += 1
        if self.steps < self.window:
            return ()
        root = math.sqrt(self.window)
        self.sums = self._contributions.sum(axis=0)
        self.raw_sum = float(self._raw.sum())
        rising = self.sums > self.z * self._contributions.std(axis=0, ddof=1) * root
        falling = self.raw_sum < -self.z * float(self._raw.std(ddof=1)) * root
        self.flagged = tuple(n for n, up in zip(self.names, rising, strict=True) if up and falling)
        for name in self.flagged:
            self.flagged_steps[name] += 1
            if name not in self.first_flagged:
                self.first_flagged[name] = self.steps
                log.warning(
                    "reward hacking suspected at step %d: objective %r contributed %+.4g over "
                    "the last %d steps while the unshaped return was %+.4g",
                    self.steps, name, self.sums[self.names.index(name)], self.window,
                    self.raw_sum,
                )  # fmt: skip
        return self.flagged
