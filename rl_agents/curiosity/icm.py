"""Intrinsic curiosity (Pathak et al. 2017): reward the transitions the agent cannot predict yet.

An encoder ``phi`` maps observations to features. The inverse model
predicts the action from ``(phi(s), phi(s'))``, which shapes ``phi`` to
keep what the agent controls; the forward model predicts ``phi(s')`` from
``(phi(s), a)``, and its error is the intrinsic reward. The forward loss
does not reach the target ``phi(s')`` (detached), so the encoder cannot
shrink every feature to zero to make prediction trivial.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rl_agents.curiosity.config import ICMConfig

_TINY = 1e-12


class ICMOutput(NamedTuple):
    """Losses and rewards of one batch through the ICM."""

    loss: Tensor
    """``(1 - beta) * inverse_loss + beta * forward_loss``, to minimise."""
    forward_loss: Tensor
    """Mean squared error of the predicted next features."""
    inverse_loss: Tensor
    """Mean squared error of the predicted actions."""
    intrinsic: Tensor
    """``[B]`` ``eta *`` each transition's forward error, detached."""


class MixedRewards(NamedTuple):
    """Extrinsic and intrinsic rewards mixed under the cap."""

    total: Tensor
    """``[B]`` ``w_e * extrinsic + k * w_i * intrinsic``."""
    intrinsic: Tensor
    """``[B]`` the intrinsic part after the cap, ``k * w_i * intrinsic``."""
    ratio: Tensor
    """``sum |intrinsic part| / sum |extrinsic part|`` over the batch (0 when both are 0)."""


def _linear(in_dim: int, out_dim: int, generator: torch.Generator) -> nn.Linear:
    """An ``nn.Linear`` with its default law of weights, drawn from ``generator``."""
    layer = nn.Linear(in_dim, out_dim)
    bound = 1.0 / math.sqrt(in_dim)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


class ICM(nn.Module):
    """Encoder, forward model ``(phi(s), a) -> phi(s')`` and inverse model
    ``(phi(s), phi(s')) -> a`` (actions in [-1, 1])."""

    def __init__(
        self, obs_dim: int, action_dim: int, config: ICMConfig, generator: torch.Generator
    ) -> None:
        super().__init__()
        h, f = config.hidden_size, config.feature_dim
        self.config = config
        self.encoder = nn.Sequential(
            _linear(obs_dim, h, generator), nn.ReLU(), _linear(h, f, generator)
        )
        self.forward_model = nn.Sequential(
            _linear(f + action_dim, h, generator),
            nn.ReLU(),
            _linear(h, h, generator),
            nn.ReLU(),
            _linear(h, f, generator),
        )
        self.inverse_model = nn.Sequential(
            _linear(2 * f, h, generator), nn.ReLU(), _linear(h, action_dim, generator), nn.Tanh()
        )

    def forward(self, obs: Tensor, actions: Tensor, next_obs: Tensor) -> ICMOutput:
        """The ICM's losses on a batch and the batch's intrinsic rewards."""
        phi, phi_next = self.encoder(obs), self.encoder(next_obs)
        predicted_next = self.forward_model(torch.cat([phi, actions], dim=-1))
        forward_error = (predicted_next - phi_next.detach()).square().mean(-1)
        predicted_action = self.inverse_model(torch.cat([phi, phi_next], dim=-1))
        inverse_loss = (predicted_action - actions).square().mean()
        forward_loss = forward_error.mean()
        beta = self.config.beta
        return ICMOutput(
            loss=(1.0 - beta) * inverse_loss + beta * forward_loss,
            forward_loss=forward_loss,
            inverse_loss=inverse_loss,
            intrinsic=self.config.eta * forward_error.detach(),
        )

    @torch.no_grad()
    def intrinsic_reward(self, obs: Tensor, actions: Tensor, next_obs: Tensor) -> Tensor:
        """``eta * mean((forward_model(phi(s), a) - phi(s'))^2)`` per transition, ``[B]``."""
        return self(obs, actions, next_obs).intrinsic


def mix_rewards(extrinsic: Tensor, intrinsic: Tensor, config: ICMConfig) -> MixedRewards:
    """``w_e * extrinsic + k * w_i * intrinsic`` with the intrinsic share capped per batch.

    With ``E = sum |w_e * extrinsic|`` and ``I = sum |w_i * intrinsic|`` over
    the batch, the intrinsic part is scaled by one factor
    ``k = min(1, c / (1 - c) * E / I)`` (``c = intrinsic_cap``), so that
    ``k I / (E + k I) <= c``: curiosity never makes up more than 10% of the
    reward magnitude the critic learns from. A batch without any extrinsic
    reward gets no intrinsic reward either. One factor for the whole batch
    keeps the ordering of the intrinsic rewards within it (a per-transition
    cap would erase curiosity exactly where the extrinsic reward is 0).
    """
    ext = config.extrinsic_weight * extrinsic
    intr = config.intrinsic_weight * intrinsic
    ext_mass = ext.abs().sum()
    limit = config.intrinsic_cap / (1.0 - config.intrinsic_cap) * ext_mass
    scale = (limit / intr.abs().sum().clamp_min(_TINY)).clamp(max=1.0)
    intr = scale * intr
    ratio = intr.abs().sum() / ext_mass.clamp_min(_TINY)
    return MixedRewards(total=ext + intr, intrinsic=intr, ratio=ratio)
