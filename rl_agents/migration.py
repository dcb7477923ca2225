"""The plan's checkpoint migration: discrete actors (7 actions) become continuous ones.

A discrete actor ``Linear(d, 256), ReLU, Linear(256, 128), ReLU, Linear(128, 7)``
becomes ``Linear(d, 256), ReLU, Linear(256, 128), ReLU, Linear(128, 1), Tanh``:
the two hidden layers are copied (equal weights, their own tensors), the
output layer is new. It starts at zero, so the migrated actor holds
(action 0) on every observation until it is trained, instead of inheriting a
collapsed preference. (The plan's sketch reused ``discrete_actor[0]`` and
``[1]``, the first Linear and its ReLU, which would feed 256 features into
``Linear(128, 1)``; the hidden layers are modules 0 and 2.)

``sac_actor_from_discrete`` does the same for SAC: the hidden layers become
the encoder of a ``SquashedGaussianActor`` whose head starts at mean 0 and
standard deviation 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rl_agents.sac.networks import SquashedGaussianActor

DISCRETE_ACTIONS = 7
"""Outputs of the original actors (``rl_agents.envs.DiscreteAction``)."""


class MigrationError(ValueError):
    """A network or file that is not a discrete actor of the expected shape."""


def _hidden_layers(discrete: nn.Sequential) -> tuple[nn.Linear, nn.Linear]:
    """The two hidden Linear layers of a discrete actor, after checking its structure."""
    kinds = [type(m) for m in discrete]
    if kinds != [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]:
        names = ", ".join(k.__name__ for k in kinds)
        raise MigrationError(
            f"expected Sequential(Linear, ReLU, Linear, ReLU, Linear), got ({names})"
        )
    first, second, out = discrete[0], discrete[2], discrete[4]
    assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
    assert isinstance(out, nn.Linear)
    if out.out_features != DISCRETE_ACTIONS or second.in_features != first.out_features:
        raise MigrationError(
            f"expected hidden layers chained into {DISCRETE_ACTIONS} outputs, got "
            f"{first.in_features}->{first.out_features}, {second.in_features}->"
            f"{second.out_features}, {out.in_features}->{out.out_features}"
        )
    return first, second


def _copy(layer: nn.Linear) -> nn.Linear:
    new = nn.Linear(layer.in_features, layer.out_features)
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        new.bias.copy_(layer.bias)
    return new


def migrate_actor(discrete: nn.Sequential) -> nn.Sequential:
    """The continuous actor of a discrete one: same hidden layers (copied), output ``tanh``
    of a new ``Linear(h2, 1)`` that starts at zero (hold)."""
    first, second = _hidden_layers(discrete)
    head = nn.Linear(second.out_features, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return nn.Sequential(_copy(first), nn.ReLU(), _copy(second), nn.ReLU(), head, nn.Tanh())


def sac_actor_from_discrete(discrete: nn.Sequential) -> SquashedGaussianActor:
    """A SAC actor whose encoder is the discrete actor's hidden layers (copied); its head
    starts at mean 0 (hold) and log std 0."""
    first, second = _hidden_layers(discrete)
    hidden = (first.out_features, second.out_features)
    actor = SquashedGaussianActor(first.in_features, 1, hidden, torch.Generator())
    with torch.no_grad():
        for target, source in ((actor.encoder[0], first), (actor.encoder[2], second)):
            assert isinstance(target, nn.Linear)
            target.weight.copy_(source.weight)
            target.bias.copy_(source.bias)
        actor.head.weight.zero_()
        actor.head.bias.zero_()
    return actor


def discrete_actor_of(state: Mapping[str, Tensor]) -> nn.Sequential:
    """The discrete actor of a state dict with keys ``0.*, 2.*, 4.*`` (an nn.Sequential's)."""
    try:
        (h1, d), (h2, _), (k, _) = (state[f"{i}.weight"].shape for i in (0, 2, 4))
    except (KeyError, ValueError) as e:
        raise MigrationError(f"not the state dict of a discrete actor: {e}") from e
    actor = nn.Sequential(
        nn.Linear(d, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, k)
    )
    actor.load_state_dict(state)
    return actor


def migrate_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Write a copy of a discrete checkpoint (a dict with an ``actor`` state dict) whose
    actor is migrated and whose ``action_space`` is ``continuous``."""
    checkpoint: dict[str, Any] = torch.load(Path(source), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "actor" not in checkpoint:
        raise MigrationError(f"{source}: expected a dict with an 'actor' state dict")
    continuous = migrate_actor(discrete_actor_of(checkpoint["actor"]))
    migrated = {**checkpoint, "actor": continuous.state_dict(), "action_space": "continuous"}
    path = Path(target)
    torch.save(migrated, path)
    return path
