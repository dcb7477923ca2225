"""Settings of hindsight experience replay for return goals (YAML section ``her``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class HERConfig:
    """Goal-conditioned replay: transitions relabelled with returns achieved later; off by
    default."""

    enabled: bool = False
    """Condition the policy on a return goal and relabel replayed transitions."""
    k: int = 4
    """Future goals sampled per stored transition (the plan's k = 4)."""
