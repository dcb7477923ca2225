"""Hindsight replay of return goals: each episode's transitions relabelled with k future goals.

A transition is stored at once with its goal reward (so learning can start
before the first episode ends) and kept until its episode ends. Then each
transition ``t`` of each symbol gets ``k`` copies whose goal is a return that
symbol achieved after step ``t`` of the same episode (the *future* strategy
of Andrychowicz et al. 2017: the achieved returns of the next observations of
transitions ``t .. T-1``, drawn uniformly with replacement), and whose reward
is ``goal_reward`` of that goal. Originals and copies go to one
``ReplayBuffer``; termination and truncation are copied unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from rl_agents.her.goals import ACHIEVED, GOAL, goal_reward
from rl_agents.sac.buffer import Batch, ReplayBuffer

if TYPE_CHECKING:
    import gymnasium as gym

    from rl_agents.sac.config import SACConfig


class Transitions(NamedTuple):
    """Rows of transitions (first axis: the transition), as ``ReplayBuffer.add`` takes them."""

    observations: npt.NDArray[np.float32]
    """``[m, obs_dim]``, the goal features last."""
    actions: npt.NDArray[np.float32]
    """``[m, action_dim]``."""
    rewards: npt.NDArray[np.float64]
    """``[m]``: the goal reward (the extrinsic one in an episode given to ``relabel``)."""
    next_observations: npt.NDArray[np.float32]
    """``[m, obs_dim]``, with the same goal as ``observations``."""
    terminated: npt.NDArray[np.float32]
    """``[m]``."""
    truncated: npt.NDArray[np.float32]
    """``[m]``."""
    agent_ids: npt.NDArray[np.int64]
    """``[m]``."""


def future_indices(steps: int, uniform: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """For ``uniform [steps, ...]`` in [0, 1): an index into ``t .. steps-1`` for each entry
    of row ``t`` (the future of transition ``t``, its own next observation included)."""
    t = np.arange(steps).reshape((steps,) + (1,) * (uniform.ndim - 1))
    index = t + np.floor(uniform * (steps - t)).astype(np.int64)
    return np.minimum(index, steps - 1)


def relabel(episode: Transitions, uniform: npt.NDArray[Any], penalty: float) -> Transitions:
    """``k`` relabelled copies of each transition of one episode of one symbol.

    ``episode`` holds the episode's ``T`` transitions in order, with their
    extrinsic rewards (before the goal term); ``uniform [T, k]`` holds the
    draws in [0, 1) that pick the future goals. Copy ``j`` of transition ``t`` is row
    ``t * k + j``: its goal is the return achieved at the next observation of
    transition ``future_indices(T, uniform)[t, j]``, in both observations, and
    its reward is ``goal_reward`` of that goal.
    """
    steps, k = uniform.shape
    achieved = episode.next_observations[:, ACHIEVED]
    goals = achieved[future_indices(steps, uniform)].reshape(-1)
    repeat = np.repeat(np.arange(steps), k)
    observations = episode.observations[repeat]
    next_observations = episode.next_observations[repeat]
    observations[:, GOAL] = goals
    next_observations[:, GOAL] = goals
    rewards = goal_reward(episode.rewards[repeat], achieved[repeat], goals, penalty)
    return Transitions(
        observations,
        episode.actions[repeat],
        rewards,
        next_observations,
        episode.terminated[repeat],
        episode.truncated[repeat],
        episode.agent_ids[repeat],
    )


class HERBuffer:
    """A ``ReplayBuffer`` filled with each transition and, when its episode ends, its ``k``
    relabelled copies.

    ``add`` and ``sample`` take what ``ReplayBuffer``'s do (one step's ``rows``
    transitions at a time, their extrinsic rewards); the stored reward is
    ``goal_reward`` with ``penalty``. An episode ends with a step that
    terminates or truncates, or after ``max_steps`` steps (its transitions are
    then relabelled among themselves), so at most ``max_steps * rows``
    transitions wait besides the replay buffer's ``capacity``. The future goals
    are drawn from ``generator``.
    """

    def __init__(
        self,
        replay: ReplayBuffer,
        *,
        k: int,
        rows: int,
        max_steps: int,
        penalty: float,
        generator: torch.Generator,
    ) -> None:
        if k < 0 or rows < 1 or max_steps < 1:
            raise ValueError(
                f"need k >= 0, rows >= 1, max_steps >= 1; got {k}, {rows}, {max_steps}"
            )
        self.replay = replay
        self.k, self.rows, self.max_steps, self.penalty = k, rows, max_steps, penalty
        self.generator = generator
        obs_dim, action_dim = replay.obs_dim, replay.action_dim
        self._obs = np.zeros((max_steps, rows, obs_dim), dtype=np.float32)
        self._next = np.zeros((max_steps, rows, obs_dim), dtype=np.float32)
        self._actions = np.zeros((max_steps, rows, action_dim), dtype=np.float32)
        self._extrinsic = np.zeros((max_steps, rows))
        self._terminated = np.zeros((max_steps, rows), dtype=np.float32)
        self._truncated = np.zeros((max_steps, rows), dtype=np.float32)
        self._ids = np.zeros((max_steps, rows), dtype=np.int64)
        self.steps = 0
        """Steps of the current episode waiting to be relabelled."""
        self.episodes = 0
        """Episodes relabelled."""
        self.relabelled = 0
        """Relabelled transitions added to the replay buffer."""

    @classmethod
    def for_training(
        cls,
        env: gym.Env[Any, Any],
        replay: ReplayBuffer,
        config: SACConfig,
        generator: torch.Generator,
    ) -> HERBuffer:
        """The buffer ``train`` fills for ``config`` (``her.enabled``) on ``env``, which must
        carry the goal features (``rl_agents.her.wrap_env``)."""
        from rl_agents.her.env import goal_env
        from rl_agents.sac.config import ConfigError

        if goal_env(env) is None:
            raise ConfigError(
                "her.enabled needs an env with return goals: wrap it with "
                "rl_agents.her.wrap_env (rl_agents.phases.training_env does)"
            )
        shape = env.observation_space.shape or ()
        return cls(
            replay,
            k=config.her.k,
            rows=shape[0] if len(shape) == 2 else 1,
            max_steps=config.her.horizon,
            penalty=config.her.miss_penalty * config.reward_scale,
            generator=generator,
        )

    def __len__(self) -> int:
        return len(self.replay)

    def add(
        self,
        obs: npt.ArrayLike,
        action: npt.ArrayLike,
        reward: npt.ArrayLike,
        next_obs: npt.ArrayLike,
        terminated: npt.ArrayLike,
        truncated: npt.ArrayLike,
        agent_ids: npt.ArrayLike | None = None,
    ) -> None:
        """Store one step's ``rows`` transitions with their goal rewards (``reward`` is the
        extrinsic reward, one value or one per row); relabel the episode when it ends."""
        n, t = self.rows, self.steps
        self._obs[t] = np.reshape(obs, (n, -1))
        self._next[t] = np.reshape(next_obs, (n, -1))
        self._actions[t] = np.reshape(action, (n, -1))
        self._extrinsic[t] = np.broadcast_to(np.asarray(reward, dtype=np.float64).reshape(-1), n)
        self._terminated[t] = np.broadcast_to(np.asarray(terminated, np.float32).reshape(-1), n)
        self._truncated[t] = np.broadcast_to(np.asarray(truncated, np.float32).reshape(-1), n)
        ids = 0 if agent_ids is None else np.asarray(agent_ids).reshape(-1)
        self._ids[t] = np.broadcast_to(ids, n)
        stored = goal_reward(
            self._extrinsic[t], self._next[t, :, ACHIEVED], self._obs[t, :, GOAL], self.penalty
        )
        self.replay.add(
            self._obs[t], self._actions[t], stored, self._next[t],
            self._terminated[t], self._truncated[t], self._ids[t],
        )  # fmt: skip
        self.steps += 1
        if self._terminated[t].any() or self._truncated[t].any() or self.steps == self.max_steps:
            self.end_episode()

    def end_episode(self) -> None:
        """Add the ``k`` relabelled copies of the waiting transitions; start a new episode."""
        steps, self.steps = self.steps, 0
        if steps == 0 or self.k == 0:
            return
        draws = torch.rand(
            (steps, self.rows, self.k), generator=self.generator, device=self.generator.device
        )
        uniform = draws.cpu().numpy().astype(np.float64)
        for row in range(self.rows):
            episode = Transitions(
                self._obs[:steps, row], self._actions[:steps, row], self._extrinsic[:steps, row],
                self._next[:steps, row], self._terminated[:steps, row],
                self._truncated[:steps, row], self._ids[:steps, row],
            )  # fmt: skip
            copies = relabel(episode, uniform[:, row], self.penalty)
            self._store(copies)
        self.episodes += 1

    def _store(self, rows: Transitions) -> None:
        capacity = self.replay.capacity
        for start in range(0, len(rows.rewards), capacity):
            chunk = slice(start, start + capacity)
            self.replay.add(*(column[chunk] for column in rows))
        self.relabelled += len(rows.rewards)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """``batch_size`` transitions, originals and copies alike (``ReplayBuffer.sample``)."""
        return self.replay.sample(batch_size, generator)
