"""Watching a training run for action collapse, with the same statistics as the live detector.

``TrainingMonitor`` is a ``train`` callback: it keeps one ``core.collapse``
window per agent over the actions the policy takes, and asks training to
pause (the callback returns True) when the normalised entropy of any agent
falls below the critical threshold, as the plan's escalation table asks. It
also exports the run's losses, gradient norms, steps and the collapse
statistics to Prometheus (docs/metrics.md, ``trainer``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
    diversity: float
    threshold: float


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


@dataclass
class TrainingMonitor:
    """A ``train`` callback that watches the actions and pauses on a critical collapse."""

    thresholds: CollapseThresholds = field(default_factory=CollapseThresholds)
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

    def _check(self, step: int) -> bool:
        stats = self.stats()
        lowest = min(range(len(stats)), key=lambda i: stats[i].diversity)
        self.metrics.diversity.set(stats[lowest].diversity)
        judged = stats[lowest].actions >= self.thresholds.min_actions
        if judged and stats[lowest].diversity < self.thresholds.diversity_critical:
            if self.pause is None:  # the first collapse is the one to report
                self.pause = Pause(
                    step, lowest, stats[lowest].diversity, self.thresholds.diversity_critical
                )
            return True
        return False
