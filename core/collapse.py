"""Collapse statistics of an agent's actions over a sliding window, updated in O(1).

One ``ActionWindow`` per agent holds its last ``size`` actions. Each action
is the raw continuous action (binned into ``BINS`` equal bins over [-1, 1]),
the kind its smoothed value decided (buy / sell / hold, the hold zone of the
rules) and whether it led to a fill. The statistics (docs/collapse.md):

- ``entropy``: entropy in nats of the bin histogram; ``diversity`` is
  entropy / ln(BINS), 0 when every action falls in one bin, 1 when uniform;
- ``dominant_bin``: share of the window in the most frequent bin;
- ``dominant_kind``: share of the most frequent kind;
- ``repeat_run``: longest run of consecutive identical raw actions (an agent
  answering exactly the same action again and again; a healthy continuous
  policy practically never does);
- ``kind_run``: longest run of consecutive identical kinds (reported; holding
  or buying for days is normal, so no alert uses it by default);
- ``trade_frequency``: share of the window's settled actions that led to a
  fill. An action is settled when its outcome is known: at once when its
  order fills, otherwise once the portfolio has marked the step after it
  (``settle_through``), so holds and refused orders count only when trades
  decided beside them have had their chance to fill;
- ``saturation``: share of raw actions at the bounds (|a| >= 0.99).

A window is bounded by a count (the last ``size`` actions) and optionally by
event time (``span_ns``: actions older than the newest minus the span leave).
Adding an action and dropping the oldest are O(1) (amortised for the runs):
running counts, a running sum of c*ln(c) for the entropy, and monotonic
queues for the longest runs. Used by the collapse detector and by the
training monitor alike.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

BINS = 20
"""Equal-width bins of the raw action over [-1, 1]."""
SATURATION = 0.99
"""|a| at or above this counts as saturated."""
KINDS = ("hold", "buy", "sell")
"""Kind codes: the index is ``core.actions.ActionKind``."""
HOLD = 0
PENDING, FILLED, UNFILLED = 0, 1, 2
"""Outcome of an action's order: not known yet, filled, not filled (or none)."""


def action_bin(raw: float) -> int:
    """The bin of a raw action in [-1, 1] (values outside are clipped)."""
    a = min(1.0, max(-1.0, raw))
    return min(BINS - 1, int((a + 1.0) / 2.0 * BINS))


def _xlogx(c: int) -> float:
    return c * math.log(c) if c > 0 else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CollapseStats:
    """The statistics of one window."""

    actions: int
    entropy: float
    diversity: float
    dominant_bin: float
    dominant_kind: float
    kind_shares: tuple[float, float, float]
    """Shares of (buy, sell, hold)."""
    repeat_run: int
    kind_run: int
    trade_frequency: float
    saturation: float
    settled: int = 0
    """Actions whose order outcome is known (the trade frequency's denominator)."""


class _LongestRun:
    """Longest run of equal consecutive values in a sliding window, amortised O(1).

    Runs are kept in a deque; a second deque holds the runs whose length is
    not exceeded by a later run (decreasing lengths), so its head is the
    longest. Only the last run grows and only the first run shrinks.
    """

    def __init__(self) -> None:
        self._runs: deque[list[float]] = deque()  # [value, length]
        self._best: deque[list[float]] = deque()  # same list objects, decreasing length

    def push(self, value: float) -> None:
        if self._runs and self._runs[-1][0] == value:
            run = self._runs[-1]
            run[1] += 1
            if self._best and self._best[-1] is run:
                self._best.pop()
        else:
            run = [value, 1]
            self._runs.append(run)
        while self._best and self._best[-1][1] <= run[1]:
            self._best.pop()
        self._best.append(run)

    def pop_oldest(self) -> None:
        run = self._runs[0]
        run[1] -= 1
        if run[1] == 0:
            self._runs.popleft()
            if self._best and self._best[0] is run:
                self._best.popleft()
        elif len(self._best) > 1 and self._best[0] is run and run[1] <= self._best[1][1]:
            self._best.popleft()

    @property
    def longest(self) -> int:
        return int(self._best[0][1]) if self._best else 0


class ActionWindow:
    """The last ``size`` actions of one agent and their collapse statistics."""

    def __init__(self, size: int = 1000, span_ns: int | None = None) -> None:
        if size < 1:
            raise ValueError("window size must be >= 1")
        if span_ns is not None and span_ns <= 0:
            raise ValueError("span_ns must be positive")
        self.size = size
        self.span_ns = span_ns
        self._times: deque[int] = deque()
        self._bins: deque[int] = deque()
        self._kinds: deque[int] = deque()
        self._saturated: deque[bool] = deque()
        self._outcome: deque[int] = deque()
        self._steps: deque[int] = deque()
        self._bin_counts = [0] * BINS
        self._kind_counts = [0, 0, 0]
        self._xlogx_sum = 0.0
        self._saturated_count = 0
        self._filled_count = 0
        self._settled_count = 0
        self._through = 0  # actions [0, _through) are past the settled horizon
        self._raw_runs = _LongestRun()
        self._kind_runs = _LongestRun()

    def __len__(self) -> int:
        return len(self._bins)

    @property
    def last_step(self) -> int | None:
        """Step of the newest action in the window (None when empty)."""
        return self._steps[-1] if self._steps else None

    def add(self, *, raw: float, kind: int, step: int = 0, event_time: int = 0) -> None:
        """Add one action (``kind`` as ActionKind code), dropping what leaves the window."""
        if len(self._bins) == self.size:
            self._drop_oldest()
        if self.span_ns is not None:
            while self._times and self._times[0] < event_time - self.span_ns:
                self._drop_oldest()
        self._times.append(event_time)
        b = action_bin(raw)
        self._bin(b, +1)
        self._bins.append(b)
        self._kinds.append(kind)
        self._kind_counts[kind] += 1
        saturated = abs(raw) >= SATURATION
        self._saturated.append(saturated)
        self._saturated_count += saturated
        self._outcome.append(PENDING)
        self._steps.append(step)
        self._raw_runs.push(raw)
        self._kind_runs.push(kind)

    def settle_through(self, step: int) -> None:
        """Every action decided at or before ``step`` without a fill did not fill."""
        while self._through < len(self._steps) and self._steps[self._through] <= step:
            if self._outcome[self._through] == PENDING:
                self._outcome[self._through] = UNFILLED
                self._settled_count += 1
            self._through += 1

    def mark_filled(self, step: int) -> bool:
        """Record that the order of the action decided at ``step`` filled."""
        return self.settle(step, filled=True)

    def settle(self, step: int, *, filled: bool) -> bool:
        """Record the outcome of the order of the action decided at ``step``.

        Returns False when that action is no longer (or not) in the window.
        """
        if not self._steps:
            return False
        offset = self._steps[-1] - step
        if not 0 <= offset < len(self._steps):
            return False
        index = len(self._steps) - 1 - offset
        if self._steps[index] != step:  # steps with gaps: search near the guess
            try:
                index = list(self._steps).index(step)
            except ValueError:
                return False
        previous = self._outcome[index]
        outcome = FILLED if filled else UNFILLED
        if previous != outcome:
            self._filled_count += (outcome == FILLED) - (previous == FILLED)
            self._settled_count += previous == PENDING
            self._outcome[index] = outcome
        return True

    def _bin(self, b: int, delta: int) -> None:
        c = self._bin_counts[b]
        self._xlogx_sum += _xlogx(c + delta) - _xlogx(c)
        self._bin_counts[b] = c + delta

    def _drop_oldest(self) -> None:
        self._bin(self._bins.popleft(), -1)
        self._kind_counts[self._kinds.popleft()] -= 1
        self._saturated_count -= self._saturated.popleft()
        outcome = self._outcome.popleft()
        self._through = max(0, self._through - 1)
        self._filled_count -= outcome == FILLED
        self._settled_count -= outcome != PENDING
        self._steps.popleft()
        self._times.popleft()
        self._raw_runs.pop_oldest()
        self._kind_runs.pop_oldest()

    def stats(self) -> CollapseStats:
        """The window's statistics (all zero for an empty window)."""
        n = len(self._bins)
        if n == 0:
            return CollapseStats(
                actions=0, entropy=0.0, diversity=0.0, dominant_bin=0.0, dominant_kind=0.0,
                kind_shares=(0.0, 0.0, 0.0), repeat_run=0, kind_run=0, trade_frequency=0.0,
                saturation=0.0,
            )  # fmt: skip
        entropy = max(0.0, math.log(n) - self._xlogx_sum / n)
        hold, buy, sell = self._kind_counts
        return CollapseStats(
            actions=n,
            entropy=entropy,
            diversity=entropy / math.log(BINS),
            dominant_bin=max(self._bin_counts) / n,
            dominant_kind=max(self._kind_counts) / n,
            kind_shares=(buy / n, sell / n, hold / n),
            repeat_run=self._raw_runs.longest,
            kind_run=self._kind_runs.longest,
            trade_frequency=self._filled_count / self._settled_count
            if self._settled_count
            else 0.0,
            settled=self._settled_count,
            saturation=self._saturated_count / n,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CollapseThresholds:
    """When a window counts as collapsed (the plan's values by default)."""

    dominance: float = 0.60
    """Warning when the dominant bin holds more than this share of the window."""
    diversity: float = 0.30
    """Warning when the normalised entropy falls below this."""
    diversity_critical: float = 0.20
    """Critical when the normalised entropy falls below this."""
    repeats: int = 5
    """Warning when more than this many consecutive actions are identical."""
    trade_frequency: float = 0.05
    """Warning when fewer than this share of the window's actions led to a fill."""
    min_actions: int = 50
    """No judgement before the window holds this many actions."""


@dataclass(frozen=True, slots=True)
class Breach:
    """One statistic on the wrong side of its threshold."""

    metric: str
    severity: str
    value: float
    threshold: float


METRICS = ("dominance", "entropy", "repeats", "trade_frequency")
"""The metrics an alert can be about (``Breach.metric``)."""


def evaluate(stats: CollapseStats, limits: CollapseThresholds) -> dict[str, Breach | None]:
    """Each metric's breach (or None when healthy); nothing is judged on a short window."""
    if stats.actions < limits.min_actions:
        return dict.fromkeys(METRICS)
    entropy: Breach | None = None
    if stats.diversity < limits.diversity_critical:
        entropy = Breach("entropy", "critical", stats.diversity, limits.diversity_critical)
    elif stats.diversity < limits.diversity:
        entropy = Breach("entropy", "warning", stats.diversity, limits.diversity)
    return {
        "dominance": Breach("dominance", "warning", stats.dominant_bin, limits.dominance)
        if stats.dominant_bin > limits.dominance
        else None,
        "entropy": entropy,
        "repeats": Breach("repeats", "warning", stats.repeat_run, limits.repeats)
        if stats.repeat_run > limits.repeats
        else None,
        "trade_frequency": Breach(
            "trade_frequency", "warning", stats.trade_frequency, limits.trade_frequency
        )
        if stats.settled >= limits.min_actions and stats.trade_frequency < limits.trade_frequency
        else None,
    }
