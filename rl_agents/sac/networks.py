"""SAC's networks: squashed Gaussian actors and fused twin critics.

Every layer is initialised like ``torch.nn.Linear`` (uniform in
``+-1/sqrt(fan_in)``) but from an explicit generator, so a seed fixes the
weights without touching torch's global random state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_STD_MIN = -20.0
"""Lower bound of the actor's log standard deviation (as in Stable-Baselines3)."""
LOG_STD_MAX = 2.0
"""Upper bound of the actor's log standard deviation."""
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def init_uniform_(tensor: Tensor, fan_in: int, generator: torch.Generator) -> Tensor:
    """Fill ``tensor`` from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), nn.Linear's default law."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def mlp(in_dim: int, hidden: Sequence[int], generator: torch.Generator) -> nn.Sequential:
    """``Linear, ReLU`` for each hidden size: the encoder of an actor."""
    layers: list[nn.Module] = []
    for out_dim in hidden:
        linear = nn.Linear(in_dim, out_dim)
        init_uniform_(linear.weight, in_dim, generator)
        init_uniform_(linear.bias, in_dim, generator)
        layers += [linear, nn.ReLU()]
        in_dim = out_dim
    return nn.Sequential(*layers)


def squash(mean: Tensor, log_std: Tensor, noise: Tensor | None) -> tuple[Tensor, Tensor]:
    """``tanh(mean + std * noise)`` and its log-probability (summed over the last axis).

    The log-probability of the Gaussian sample ``u`` is corrected for the tanh:
    ``log p(a) = log N(u) - sum log(1 - tanh(u)^2)``, with
    ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))`` (stable for large ``|u|``).
    Without noise the action is the mode ``tanh(mean)`` and the log-probability
    is that of the mode.
    """
    log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    if noise is None:
        noise = torch.zeros_like(mean)
    u = mean + log_std.exp() * noise
    log_prob = -0.5 * noise.square() - log_std - _HALF_LOG_2PI
    log_prob = log_prob - 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))
    return torch.tanh(u), log_prob.sum(-1)


class SquashedGaussianActor(nn.Module):
    """One policy ``obs [B, d] -> actions [B, action_dim]`` in [-1, 1]."""

    def __init__(
        self, obs_dim: int, action_dim: int, hidden: Sequence[int], generator: torch.Generator
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.encoder = mlp(obs_dim, hidden, generator)
        self.head = nn.Linear(hidden[-1], 2 * action_dim)
        init_uniform_(self.head.weight, hidden[-1], generator)
        init_uniform_(self.head.bias, hidden[-1], generator)

    def forward(self, obs: Tensor, agent_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log standard deviation of the Gaussian before the tanh.

        ``agent_ids`` is accepted for the interface of ``FleetActor`` and ignored.
        """
        mean, log_std = self.head(self.encoder(obs)).chunk(2, dim=-1)
        return mean, log_std

    def sample(
        self, obs: Tensor, agent_ids: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """A reparameterised action ``[B, action_dim]`` and its log-probability ``[B]``."""
        mean, log_std = self(obs, agent_ids)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return squash(mean, log_std, noise)


class FleetActor(nn.Module):
    """The policies of ``n_agents`` symbols: a shared encoder and one head per symbol.

    The heads are batched weights ``[n_agents, hidden, 2]`` (mean and log
    std), so one einsum evaluates every symbol: ``obs [B, n, d] -> [B, n]``.
    Sampled replay rows ``obs [B, d]`` of symbols ``agent_ids [B]`` use
    their own symbol's head (a gather of the head weights).
    """

    action_dim = 1

    def __init__(
        self, n_agents: int, obs_dim: int, hidden: Sequence[int], generator: torch.Generator
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.obs_dim = obs_dim
        self.encoder = mlp(obs_dim, hidden, generator)
        self.head_weight = nn.Parameter(torch.empty(n_agents, hidden[-1], 2))
        self.head_bias = nn.Parameter(torch.empty(n_agents, 2))
        init_uniform_(self.head_weight, hidden[-1], generator)
        init_uniform_(self.head_bias, hidden[-1], generator)

    def forward(self, obs: Tensor, agent_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log std: ``[..., n, 1]`` for a whole fleet ``obs [..., n, d]`` (no ids),
        ``[B, 1]`` for rows ``obs [B, d]`` of the agents ``agent_ids [B]``."""
        features = self.encoder(obs)
        if agent_ids is None:
            out = torch.einsum("...nh,nho->...no", features, self.head_weight) + self.head_bias
        else:
            # index_select, not indexing: the backward of an index is a parallel scatter-add
            # whose order (so its rounding) changes from run to run on a multi-core CPU;
            # index_select's (index_add) is deterministic there.
            weight = self.head_weight.index_select(0, agent_ids)
            bias = self.head_bias.index_select(0, agent_ids)
            out = torch.einsum("bh,bho->bo", features, weight) + bias
        mean, log_std = out.split(1, dim=-1)
        return mean, log_std

    def sample(
        self, obs: Tensor, agent_ids: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """A reparameterised action ``[..., 1]`` and its log-probability ``[...]``."""
        mean, log_std = self(obs, agent_ids)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return squash(mean, log_std, noise)


Actor = SquashedGaussianActor | FleetActor


class TwinCritic(nn.Module):
    """Both soft Q-networks in one module: ``(obs [B, d], actions [B, a]) -> Q [2, B]``.

    Each layer's weights are stacked ``[2, in, out]`` and evaluated for both
    critics by one ``baddbmm``, instead of two MLPs called one after the other.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int],
        generator: torch.Generator,
        n_critics: int = 2,
    ) -> None:
        super().__init__()
        sizes = [obs_dim + action_dim, *hidden, 1]
        self.n_critics = n_critics
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            weight = torch.empty(n_critics, fan_in, fan_out)
            bias = torch.empty(n_critics, 1, fan_out)
            for k in range(n_critics):  # critic by critic, each like an nn.Linear
                init_uniform_(weight[k], fan_in, generator)
                init_uniform_(bias[k], fan_in, generator)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))

    def forward(self, obs: Tensor, actions: Tensor, frozen: bool = False) -> Tensor:
        """Q-values ``[n_critics, B]``; ``frozen`` detaches the weights, so gradients reach
        the actions (the actor) but no critic weight."""
        x = torch.cat([obs, actions], dim=-1).expand(self.n_critics, -1, -1)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if frozen:
                weight, bias = weight.detach(), bias.detach()
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                x = F.relu(x, inplace=True)
        return x.squeeze(-1)
