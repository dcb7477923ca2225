"""Settings of the reward engineering of phase C (YAML section ``rewards``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RewardConfig:
    """The multi-objective shaper and the potential-based shaping; off by default."""

    enabled: bool = False
    """Replace the env's reward (the log change of equity) by the shaped reward."""
