"""Checkpoint selection on the validation days by the hard gates of the evaluation.

A fleet's policy moves a lot from one thousand updates to the next (all heads
share an encoder, and the market moves them together): the last weights of a
run are one draw among many. ``CheckpointSelector`` is a ``train`` callback
that, every ``every`` steps, replays the validation days offline with the
deterministic policy (``PortfolioTradingEnv``, the same rules as the
pipeline), measures the hard gates of ``core.gates`` on those actions, and
keeps a copy of the weights with the best validation return among those that
pass them with a margin (``GateLimits.tightened``; 0.05 by default): a
checkpoint that barely meets a gate on 36 validation days tends to miss it on
the next days. The test days are never looked at.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from core.collapse import ActionWindow
from core.gates import GateLimits, GateResult, hard_gates
from rl_agents.envs import PortfolioTradingEnv
from rl_agents.sac.agent import SAC, Progress


@dataclass(frozen=True, slots=True, kw_only=True)
class Validation:
    """The deterministic policy's measures on the validation days at one step."""

    step: int
    total_return: float
    diversity: float
    dominant_bin: float
    worst: str
    trade_frequency: float
    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """Whether every hard gate passed."""
        return all(g.passed for g in self.gates)

    def meets(self, limits: GateLimits) -> bool:
        """Whether these measures pass the hard gates at ``limits``."""
        gates = hard_gates(
            dominant_bin=self.dominant_bin,
            diversity=self.diversity,
            trade_frequency=self.trade_frequency,
            limits=limits,
            worst=self.worst,
        )
        return all(g.passed for g in gates)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the run record."""
        return {
            "total_return": self.total_return,
            "diversity": self.diversity,
            "dominant_bin": self.dominant_bin,
            "worst_agent": self.worst,
            "trade_frequency": self.trade_frequency,
            "passed": self.passed,
        }


def validate_fleet(
    agent: SAC, env: gym.Env[Any, Any], step: int, limits: GateLimits | None = None
) -> Validation:
    """Replay ``env``'s days from the start with ``agent``'s deterministic actions.

    ``env`` is a ``PortfolioTradingEnv`` or one wrapped in the phases the agent
    was trained with (``rl_agents.phases``): the agent sees what it saw in
    training, and the actions measured are those the env traded
    (``info["traded_actions"]`` where a wrapper such as the options replaces
    the agent's). Measured as the evaluation measures a streamed run: one
    action per agent and day, the last day's included (its order expires at
    the end of the data).
    """
    base = env.unwrapped
    if not isinstance(base, PortfolioTradingEnv):
        raise TypeError(f"validation replays a PortfolioTradingEnv, got {type(base).__name__}")
    obs, _ = env.reset(options={"start": 0})
    engine = base.engine
    windows = [ActionWindow(size=1 << 30) for _ in range(engine.n)]
    start_equity = engine.equity
    t = fills = 0
    done = False
    while not done:
        action = agent.act(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        traded = np.asarray(info.get("traded_actions", action), dtype=np.float64).reshape(-1)
        filled = engine.quantity != 0.0  # the orders of this step's actions, at the next open
        fills += int(filled.sum())
        for i, window in enumerate(windows):
            window.add(raw=float(traded[i]), kind=0, step=t)
            window.settle(t, filled=bool(filled[i]))
        t += 1
        done = terminated or truncated
    if not terminated:
        # The pipeline decides on the last bar too; that order expires unfilled (end of data).
        action = agent.act(obs, deterministic=True)
        for i, window in enumerate(windows):
            window.add(raw=float(action[i]), kind=0, step=t)
            window.settle(t, filled=False)
    stats = [w.stats() for w in windows]
    settled = sum(s.settled for s in stats)
    worst = int(np.argmax([s.dominant_bin for s in stats]))
    diversity = float(np.mean([s.diversity for s in stats]))
    trade_frequency = fills / settled if settled else 0.0
    name = base.symbols[worst]
    gates = hard_gates(
        dominant_bin=stats[worst].dominant_bin,
        diversity=diversity,
        trade_frequency=trade_frequency,
        limits=limits,
        worst=name,
    )
    return Validation(
        step=step,
        total_return=engine.equity / start_equity - 1.0,
        diversity=diversity,
        dominant_bin=stats[worst].dominant_bin,
        worst=name,
        trade_frequency=trade_frequency,
        gates=tuple(gates),
    )


@dataclass
class CheckpointSelector:
    """A ``train`` callback that keeps the weights with the best validation return among
    those that pass the gates, tightened by ``margin``, on the validation days."""

    env: gym.Env[Any, Any]
    """The validation env: a ``PortfolioTradingEnv``, in the training's wrappers."""
    every: int
    after: int = 0
    """No validation before this step (learning starts)."""
    limits: GateLimits = field(default_factory=GateLimits)
    """The evaluation's hard gates (what each validation reports as passed or not)."""
    margin: float = 0.05
    """How far inside ``limits`` a validation must be to be selected."""
    history: list[Validation] = field(default_factory=list)
    best: Validation | None = None
    state: dict[str, Any] | None = None
    """``SAC.state_dict()`` of the best weights so far."""

    def __post_init__(self) -> None:
        self.limits.tightened(self.margin)  # a clear error now for a margin that cannot pass

    def __call__(self, progress: Progress) -> Validation | None:
        """Validate at every ``every``-th step; return the validation when one ran."""
        if progress.agent is None or progress.step <= self.after or progress.step % self.every:
            return None
        validation = validate_fleet(progress.agent, self.env, progress.step, self.limits)
        self.history.append(validation)
        if self.selectable(validation) and (
            self.best is None or validation.total_return > self.best.total_return
        ):
            self.best = validation
            self.state = copy.deepcopy(progress.agent.state_dict())
        return validation

    def selectable(self, validation: Validation) -> bool:
        """Whether ``validation`` passes the gates with the margin."""
        return validation.meets(self.limits.tightened(self.margin))

    def restore(self, agent: SAC) -> Validation | None:
        """Load the best weights into ``agent``; None (and no change) when none passed."""
        if self.state is None:
            return None
        agent.load_state_dict(self.state)
        return self.best
