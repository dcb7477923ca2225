"""A circular replay buffer of preallocated tensors, filled a batch of transitions at a time.

A transition keeps *termination* (the MDP ended: no value after it) apart
from *truncation* (the episode was cut, by a time limit or the end of the
data: the next state still has a value). SAC bootstraps with
``1 - terminated`` only, so a truncated transition is bootstrapped through.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

ArrayLike = npt.NDArray[np.generic] | Tensor | float | bool


class Batch(NamedTuple):
    """Transitions sampled from a ``ReplayBuffer`` (first axis: the transition)."""

    observations: Tensor
    """``[B, obs_dim]`` float32."""
    actions: Tensor
    """``[B, action_dim]`` float32, in [-1, 1]."""
    rewards: Tensor
    """``[B]`` float32."""
    next_observations: Tensor
    """``[B, obs_dim]`` float32: the observation the step returned (never a reset's)."""
    terminated: Tensor
    """``[B]`` float32, 1.0 where the MDP ended: the only thing that stops bootstrapping."""
    truncated: Tensor
    """``[B]`` float32, 1.0 where the episode was cut short: kept for inspection only."""
    agent_ids: Tensor
    """``[B]`` int64, which agent (symbol) of a fleet produced the transition; 0 otherwise."""


def _rows(value: ArrayLike, k: int, width: int | None, device: torch.device) -> Tensor:
    tensor = torch.as_tensor(value, device=device)
    shape = (k,) if width is None else (k, width)
    if tensor.numel() != k * (width or 1):
        raise ValueError(f"expected {k} row(s) of shape {shape[1:]}, got {tuple(tensor.shape)}")
    return tensor.reshape(shape)


class ReplayBuffer:
    """``capacity`` transitions in preallocated tensors on ``device``; the oldest are
    overwritten first; sampling is uniform with replacement from a caller's generator."""

    def __init__(
        self, capacity: int, obs_dim: int, action_dim: int, device: torch.device | str = "cpu"
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.device = torch.device(device)
        f32 = {"dtype": torch.float32, "device": self.device}
        self.observations = torch.zeros(capacity, obs_dim, **f32)
        self.actions = torch.zeros(capacity, action_dim, **f32)
        self.rewards = torch.zeros(capacity, **f32)
        self.next_observations = torch.zeros(capacity, obs_dim, **f32)
        self.terminated = torch.zeros(capacity, **f32)
        self.truncated = torch.zeros(capacity, **f32)
        self.agent_ids = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        self.position = 0
        """Index of the next row to write."""
        self.size = 0
        """Rows holding a transition."""

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: ArrayLike,
        action: ArrayLike,
        reward: ArrayLike,
        next_obs: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        agent_ids: ArrayLike | None = None,
    ) -> None:
        """Store ``k`` transitions at once: ``obs [k, obs_dim]`` (or ``[obs_dim]`` for one),
        ``action [k, action_dim]``, ``reward``, ``terminated`` and ``truncated`` ``[k]``.

        One step of a portfolio env of n symbols is n transitions: pass
        ``agent_ids = arange(n)`` so each row remembers its symbol.
        """
        obs_t = torch.as_tensor(obs, device=self.device)
        k = obs_t.numel() // self.obs_dim
        if k < 1 or k > self.capacity:
            raise ValueError(f"add takes 1..{self.capacity} transitions, got {k}")
        end = self.position + k
        target: slice | Tensor = (
            slice(self.position, end)
            if end <= self.capacity
            else torch.arange(self.position, end, device=self.device) % self.capacity
        )
        device = self.device
        self.observations[target] = _rows(obs_t, k, self.obs_dim, device)
        self.actions[target] = _rows(action, k, self.action_dim, device)
        self.rewards[target] = _rows(reward, k, None, device)
        self.next_observations[target] = _rows(next_obs, k, self.obs_dim, device)
        self.terminated[target] = _rows(terminated, k, None, device)
        self.truncated[target] = _rows(truncated, k, None, device)
        ids = 0 if agent_ids is None else _rows(agent_ids, k, None, device)
        self.agent_ids[target] = ids
        self.position = (self.position + k) % self.capacity
        self.size = min(self.size + k, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """``batch_size`` transitions drawn uniformly (with replacement) by ``generator``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer: add transitions first")
        index = torch.randint(self.size, (batch_size,), generator=generator, device=self.device)
        return Batch(
            observations=self.observations[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            next_observations=self.next_observations[index],
            terminated=self.terminated[index],
            truncated=self.truncated[index],
            agent_ids=self.agent_ids[index],
        )
