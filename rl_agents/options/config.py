"""Settings of the hierarchical options of phase B (YAML section ``options``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionsConfig:
    """The five trading options and their controller; off by default."""

    enabled: bool = False
    """The agent's action chooses an option; the option's own policy trades until it ends."""
    timeout: int = 20
    """Steps after which any option ends, whatever its own termination says."""
