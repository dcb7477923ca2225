"""``SACPolicy``: a trained SAC actor behind the serving agents' ``Policy`` protocol."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

from rl_agents.policies import Actions, Observations
from rl_agents.sac.agent import SAC


class SACPolicy:
    """Deterministic actions ``tanh(mean)`` of a SAC actor, on the CPU, one batched call.

    A single-symbol actor maps each row of ``observations [n, d]`` alone; a
    ``FleetActor`` needs exactly its ``n_agents`` rows, in the order of the
    symbols it was trained on.
    """

    name = "sac"

    def __init__(
        self, agent: SAC, version: str, feature_names: tuple[str, ...] | None = None
    ) -> None:
        if agent.n_agents is None and agent.action_dim != 1:
            raise ValueError(
                f"the Policy protocol serves one action per row; this actor has "
                f"{agent.action_dim} action dimensions"
            )
        self.version = version
        self.config = agent.config
        """The checkpoint's config: which phases (``rl_agents.phases``) it was trained with."""
        self.obs_dim = agent.obs_dim
        self.feature_names = feature_names
        """Names of the observation's entries the checkpoint was trained on, when it kept them."""
        self.n_agents = agent.n_agents
        self.actor = copy.deepcopy(agent.actor).to("cpu").eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        observation_space: spaces.Box | None = None,
        action_space: spaces.Box | None = None,
    ) -> SACPolicy:
        """The policy of a checkpoint file, checked against the serving spaces when given.

        The serving spaces are one agent's (one observation row, one action); a
        fleet checkpoint of n heads is checked against n such rows, and one
        trained through the options against the rows the options augment, and
        one trained with return goals against those rows with the goal features
        appended (``rl_agents.her.training_space``).
        """
        from rl_agents.checkpoints import load_checkpoint

        checkpoint = load_checkpoint(path)
        if observation_space is not None and checkpoint.config.options.enabled:
            from rl_agents.options import augment_space  # the rows the options hand the actor

            observation_space = augment_space(observation_space)
        if observation_space is not None and checkpoint.config.her.enabled:
            from rl_agents.her import training_space  # the goal features, appended last

            observation_space = training_space(observation_space)
        n = checkpoint.architecture.get("n_agents")
        if n is not None and observation_space is not None and len(observation_space.shape) == 1:
            observation_space = _rows(observation_space, n)
        if n is not None and action_space is not None and action_space.shape == (1,):
            action_space = _rows(action_space, n)
        checkpoint.check(observation_space, action_space, path=path)
        names = checkpoint.observation.feature_names
        return cls(checkpoint.agent(device="cpu"), version=checkpoint.version, feature_names=names)

    def act(self, observations: Observations) -> Actions:
        """One action in [-1, 1] per observation row."""
        obs = np.ascontiguousarray(observations, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations [n, {self.obs_dim}], got {obs.shape}")
        if self.n_agents is not None and obs.shape[0] != self.n_agents:
            raise ValueError(
                f"this fleet policy serves {self.n_agents} symbols, got {obs.shape[0]} rows"
            )
        with torch.inference_mode():
            mean, _ = self.actor(torch.from_numpy(obs))
            return torch.tanh(mean).reshape(-1).to(torch.float64).numpy()


def _rows(space: spaces.Box, n: int) -> spaces.Box:
    """``n`` rows of a one-agent space: ``(d,)`` becomes ``(n, d)``, ``(1,)`` becomes ``(n,)``."""
    shape = (n,) if space.shape == (1,) else (n, *space.shape)
    low = np.broadcast_to(space.low.reshape(-1) if space.shape == (1,) else space.low, shape)
    high = np.broadcast_to(space.high.reshape(-1) if space.shape == (1,) else space.high, shape)
    return spaces.Box(low.copy(), high.copy(), shape, dtype=space.dtype)
