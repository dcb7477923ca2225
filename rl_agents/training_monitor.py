"""Watching a training run for action collapse, with the same statistics as the live detector.

``TrainingMonitor`` is a ``train`` callback: it keeps one ``core.collapse``
window per agent over the actions the policy takes, and asks training to
pause (the callback returns True) when the normalised entropy of any agent
falls below the critical threshold, as the plan's escalation table asks. It
also exports the run's losses, gradient norms, temperature, policy entropy,
Q-values, intrinsic reward share, evaluation return, steps and the collapse
statistics to Prometheus (docs/metrics.md, ``trainer``).

``RunRecord`` writes the same run as JSON lines beside the checkpoint: what
a run did can be read after its /metrics endpoint is gone.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from core.actions import classify
from core.collapse import ActionWindow, CollapseStats, CollapseThresholds
from rl_agents.sac.agent import Progress


@dataclass(frozen=True, slots=True)
class Pause:
    """Why training was paused."""

    step: int
    agent: int
    """Index of the collapsed agent (the fleet head)."""
    diversity: float
    threshold: float
    actions: int = 0
    """Actions in the agent's window when it was judged."""
    symbol: str | None = None
    """The collapsed agent's symbol, when the monitor knows the fleet's symbols."""

    @property
    def agent_name(self) -> str:
        """The symbol of the collapsed agent, else its index."""
        return self.symbol if self.symbol is not None else str(self.agent)


class TrainingMetrics:
    """The trainer's Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.loss = Gauge(
            "tradingbot_training_loss", "Last loss value", ("loss",), registry=registry
        )
        self.nan_losses = Counter(
            "tradingbot_training_nan_losses", "Updates that produced a NaN loss", registry=registry
        )
        self.gradient_norm = Gauge(
            "tradingbot_training_gradient_norm",
            "Last gradient norm before clipping",
            ("network",),
            registry=registry,
        )
        self.steps = Counter("tradingbot_training_steps", "Environment steps", registry=registry)
        self.diversity = Gauge(
            "tradingbot_training_action_diversity_ratio",
            "Normalised entropy of the training actions, lowest over the agents",
            registry=registry,
        )
        self.alpha = Gauge(
            "tradingbot_training_alpha", "Entropy temperature (alpha)", registry=registry
        )
        self.entropy = Gauge(
            "tradingbot_training_policy_entropy_nats",
            "Policy entropy estimate of the last batch (-mean log-probability)",
            registry=registry,
        )
        self.q_mean = Gauge(
            "tradingbot_training_q_value_mean",
            "Mean Q-value of the twin critics on the last batch",
            registry=registry,
        )
        self.intrinsic = Gauge(
            "tradingbot_training_intrinsic_reward_ratio",
            "Share of the intrinsic (curiosity) reward in the mixed reward of the last batch",
            registry=registry,
        )
        self.eval_return = Gauge(
            "tradingbot_training_eval_return",
            "Mean return of the last evaluation",
            registry=registry,
        )


@dataclass
class TrainingMonitor:
    """A ``train`` callback that watches the actions and pauses on a critical collapse."""

    thresholds: CollapseThresholds = field(default_factory=CollapseThresholds)
    symbols: Sequence[str] = ()
    """Symbol of each agent of a fleet, to name the collapsed one (indices when empty)."""
    window: int = 1000
    hold_threshold: float = 0.1
    check_every: int = 50
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    windows: list[ActionWindow] = field(default_factory=list)
    pause: Pause | None = None

    def __post_init__(self) -> None:
        self.metrics = TrainingMetrics(self.registry)
        for name in ("critic_loss", "actor_loss", "alpha_loss", "icm_loss"):
            self.metrics.loss.labels(name.removesuffix("_loss"))
        self.metrics.nan_losses.inc(0)
        self._gauges = {
            "alpha": self.metrics.alpha,
            "entropy": self.metrics.entropy,
            "q_mean": self.metrics.q_mean,
            "intrinsic_ratio": self.metrics.intrinsic,
        }

    def __call__(self, progress: Progress) -> bool:
        """Take one step's action and losses; True asks training to pause."""
        self.metrics.steps.inc()
        for key, value in progress.losses.items():
            if key.endswith("_loss"):
                if not math.isfinite(value):
                    self.metrics.nan_losses.inc()
                self.metrics.loss.labels(key.removesuffix("_loss")).set(value)
            elif key.endswith("_grad_norm"):
                self.metrics.gradient_norm.labels(key.removesuffix("_grad_norm")).set(value)
            elif key in self._gauges:
                self._gauges[key].set(value)
        if progress.evaluation is not None:
            self.metrics.eval_return.set(progress.evaluation)
        if progress.action is None:
            return False
        actions = np.atleast_1d(np.asarray(progress.action, dtype=np.float64)).reshape(-1)
        if not self.windows:
            self.windows = [ActionWindow(self.window) for _ in actions]
        kinds = classify(actions, self.hold_threshold)
        for window, raw, kind in zip(self.windows, actions, kinds, strict=True):
            window.add(raw=float(raw), kind=int(kind), step=progress.step)
        if progress.step % self.check_every:
            return False
        return self._check(progress.step)

    def stats(self) -> list[CollapseStats]:
        """Each agent's statistics now."""
        return [w.stats() for w in self.windows]

    def min_diversity(self) -> float | None:
        """The lowest normalised entropy over the agents now (None before any action)."""
        return min(s.diversity for s in self.stats()) if self.windows else None

    def _check(self, step: int) -> bool:
        stats = self.stats()
        lowest = min(range(len(stats)), key=lambda i: stats[i].diversity)
        self.metrics.diversity.set(stats[lowest].diversity)
        judged = stats[lowest].actions >= self.thresholds.min_actions
        if judged and stats[lowest].diversity < self.thresholds.diversity_critical:
            if self.pause is None:  # the first collapse is the one to report
                self.pause = Pause(
                    step,
                    lowest,
                    stats[lowest].diversity,
                    self.thresholds.diversity_critical,
                    actions=stats[lowest].actions,
                    symbol=self.symbols[lowest] if lowest < len(self.symbols) else None,
                )
            return True
        return False


Outcome = Literal["finished", "paused", "diverged"]


class RunRecord:
    """A training run as JSON lines: a start line, progress lines, a pause, the outcome.

    Every line is one JSON object with a ``kind`` (``start``, ``progress``,
    ``pause``, ``end``), the ``step`` and the wall ``time`` (Unix seconds).
    Non-finite numbers are written as ``null`` so every line is strict JSON.
    Lines are flushed as they are written, so a running record can be tailed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("w", encoding="utf-8")
        self._clock = time.perf_counter()
        self._last = (0, self._clock)
        """(step, perf_counter) of the last progress line."""

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def write(self, kind: str, step: int, **fields: Any) -> None:
        """Append one line."""
        line = {"kind": kind, "step": step, "time": time.time(), **fields}
        self._file.write(json.dumps(_finite(line), allow_nan=False) + "\n")
        self._file.flush()

    def start(self, **fields: Any) -> None:
        """The run's setup: environment, fleet, config, where the checkpoint goes."""
        self.write("start", 0, **fields)

    def progress(
        self,
        step: int,
        losses: Mapping[str, float],
        *,
        eval_return: float | None = None,
        min_action_diversity: float | None = None,
        updates: int | None = None,
    ) -> None:
        """Where training stands at ``step``; the rates are over the time since the last line
        (wall clock, evaluations included)."""
        now = time.perf_counter()
        last_step, last_time = self._last
        seconds = max(now - last_time, 1e-9)
        self._last = (step, now)
        self.write(
            "progress",
            step,
            losses=dict(losses),
            eval_return=eval_return,
            min_action_diversity=min_action_diversity,
            updates=updates,
            steps_per_s=(step - last_step) / seconds,
            elapsed_s=now - self._clock,
        )

    def paused(self, pause: Pause, checkpoint: str | Path) -> None:
        """Training paused on a collapse; the checkpoint holds the state."""
        self.write(
            "pause",
            pause.step,
            agent=pause.agent,
            symbol=pause.symbol,
            diversity=pause.diversity,
            threshold=pause.threshold,
            actions=pause.actions,
            checkpoint=str(checkpoint),
        )

    def end(self, outcome: Outcome, step: int, **fields: Any) -> None:
        """The last line: how the run ended."""
        self.write(
            "end", step, outcome=outcome, elapsed_s=time.perf_counter() - self._clock, **fields
        )


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (recursively)."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
