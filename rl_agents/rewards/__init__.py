"""Placeholder until the rewards piece is built (see rl_agents/phases.py)."""

from __future__ import annotations

from typing import Any


def wrap_env(env: Any, config: Any) -> Any:
    """The training env with this piece around it."""
    raise NotImplementedError("rewards: not built yet")


def serving_policy(policy: Any, config: Any) -> Any:
    """The served policy with this piece around it."""
    raise NotImplementedError("rewards: not built yet")
