"""A circular replay buffer of preallocated tensors, filled a batch of transitions at a time.

A transition keeps *termination* (the MDP ended: no value after it) apart
from *truncation* (the episode was cut, by a time limit or the end of the
data: the next state still has a value). SAC bootstraps with
``1 - terminated`` only, so a truncated transition is bootstrapped through.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

ArrayLike = npt.ArrayLike | Tensor


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


def _shaped(value: ArrayLike, k: int, width: int | None) -> tuple[int, ...]:
    shape = (k,) if width is None else (k, width)
    size = value.numel() if isinstance(value, Tensor) else np.size(value)
    if size != k * (width or 1):
        got = tuple(value.shape) if isinstance(value, Tensor) else np.shape(value)
        raise ValueError(f"expected {k} row(s) of shape {shape[1:]}, got {got}")
    return shape


def _numpy_rows(value: ArrayLike, k: int, width: int | None) -> npt.NDArray[Any]:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if width is None and np.size(value) == 1:
        return np.full(k, value)
    return np.reshape(value, _shaped(value, k, width))


def _tensor_rows(value: ArrayLike, k: int, width: int | None, like: Tensor) -> Tensor:
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if width is None and tensor.numel() == 1:
        return tensor.reshape(1).expand(k)
    return tensor.reshape(_shaped(tensor, k, width))


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

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(shape, dtype=torch.float32, device=self.device)

        self.observations = zeros(capacity, obs_dim)
        self.actions = zeros(capacity, action_dim)
        self.rewards = zeros(capacity)
        self.next_observations = zeros(capacity, obs_dim)
        self.terminated = zeros(capacity)
        self.truncated = zeros(capacity)
        self.agent_ids = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        self.position = 0
        """Index of the next row to write."""
        self.size = 0
        """Rows holding a transition."""
        self._columns = (
            self.observations, self.actions, self.rewards, self.next_observations,
            self.terminated, self.truncated,
        )  # fmt: skip
        self._widths = (obs_dim, action_dim, None, obs_dim, None, None)
        # On the CPU, rows are written through numpy views of the same memory: a numpy
        # row copy costs a fraction of a tensor one.
        self._views = tuple(c.numpy() for c in self._columns) if self.device.type == "cpu" else None

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
        ``action [k, action_dim]``, ``reward``, ``terminated`` and ``truncated`` ``[k]`` (or
        one value for all ``k``).

        One step of a portfolio env of n symbols is n transitions: pass
        ``agent_ids = arange(n)`` so each row remembers its symbol.
        """
        size = obs.numel() if isinstance(obs, Tensor) else np.size(obs)
        k = size // self.obs_dim
        if k < 1 or k > self.capacity:
            raise ValueError(f"add takes 1..{self.capacity} transitions, got {k}")
        values = (obs, action, reward, next_obs, terminated, truncated)
        start, end = self.position, self.position + k
        if self._views is not None:
            rows = (
                slice(start, end) if end <= self.capacity else np.arange(start, end) % self.capacity
            )
            for view, value, width in zip(self._views, values, self._widths, strict=True):
                view[rows] = _numpy_rows(value, k, width)
            ids = 0 if agent_ids is None else _numpy_rows(agent_ids, k, None)
            self.agent_ids.numpy()[rows] = ids
        else:
            index = torch.arange(start, end, device=self.device) % self.capacity
            for column, value, width in zip(self._columns, values, self._widths, strict=True):
                column[index] = _tensor_rows(value, k, width, column)
            ids_value = 0 if agent_ids is None else _tensor_rows(agent_ids, k, None, self.agent_ids)
            self.agent_ids[index] = ids_value
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
