"""Versioned SAC checkpoint files, refused when they do not fit the environment.

A checkpoint is one ``torch.save`` of a dict of plain values and tensors
(loadable with ``weights_only=True``)::

    format_version  int, FORMAT_VERSION when written
    version         str, the model's version (default: a hash of the actor's weights)
    observation     the observation space's spec: kind, shape, dtype, low, high, feature_names
    action          the action space's spec
    config          SACConfig.to_dict()
    architecture    obs_dim, action_dim, n_agents
    data_span       where the training data came from (dataset, symbols, first/last time)
    seed, metrics   the run's seed and its final metrics
    state           SAC.state_dict(): weights, temperature, optimizers, counters
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from core.features import ACCOUNT_FEATURES, FEATURE_NAMES
from rl_agents.sac.agent import SAC
from rl_agents.sac.config import SACConfig

FORMAT_VERSION = 1
"""Layout of the checkpoint dict; bumped on any incompatible change."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint trained for other observations or actions than the ones it is given."""


@dataclass(frozen=True, slots=True, eq=False)
class SpaceSpec:
    """What a policy needs to know about a ``Box`` space to be used on it."""

    shape: tuple[int, ...]
    dtype: str
    low: np.ndarray[Any, Any]
    high: np.ndarray[Any, Any]
    feature_names: tuple[str, ...] | None = None
    """Names of the last axis' entries (observations), when known."""

    @classmethod
    def of(cls, space: spaces.Space[Any], feature_names: Sequence[str] | None = None) -> SpaceSpec:
        """The spec of a ``Box`` space."""
        if not isinstance(space, spaces.Box):
            raise CheckpointError(f"only Box spaces are supported, got {space}")
        names = None if feature_names is None else tuple(feature_names)
        if names is not None and len(names) != space.shape[-1]:
            raise CheckpointError(
                f"{len(names)} feature names for a last axis of {space.shape[-1]} entries"
            )
        return cls(space.shape, str(space.dtype), space.low.copy(), space.high.copy(), names)

    def to_dict(self) -> dict[str, Any]:
        """Plain values and tensors for the checkpoint file."""
        return {
            "kind": "Box",
            "shape": list(self.shape),
            "dtype": self.dtype,
            "low": torch.from_numpy(np.asarray(self.low, dtype=np.float64)),
            "high": torch.from_numpy(np.asarray(self.high, dtype=np.float64)),
            "feature_names": None if self.feature_names is None else list(self.feature_names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpaceSpec:
        """The spec ``to_dict`` wrote."""
        names = data.get("feature_names")
        return cls(
            tuple(int(n) for n in data["shape"]),
            str(data["dtype"]),
            data["low"].numpy(),
            data["high"].numpy(),
            None if names is None else tuple(names),
        )

    def differences(self, other: SpaceSpec) -> list[str]:
        """What differs from ``other`` (the expected spec), in words; empty when it fits."""
        found = []
        if self.shape != other.shape:
            return [f"shape {self.shape} != expected {other.shape}"]
        if self.dtype != other.dtype:
            found.append(f"dtype {self.dtype} != expected {other.dtype}")
        for bound in ("low", "high"):
            mine, theirs = getattr(self, bound), getattr(other, bound)
            if not np.array_equal(np.asarray(mine, np.float64), np.asarray(theirs, np.float64)):
                found.append(f"{bound} bounds differ from the expected ones")
        if self.feature_names and other.feature_names and self.feature_names != other.feature_names:
            moved = [
                f"{i}: {a!r} != {b!r}"
                for i, (a, b) in enumerate(
                    zip(self.feature_names, other.feature_names, strict=True)
                )
                if a != b
            ]
            found.append(f"feature names differ at {', '.join(moved[:5])}")
        return found


def trading_feature_names(window: int) -> tuple[str, ...]:
    """Names of a trading observation's entries: each bar feature per lag, then the account.

    ``log_return[t-9] ... trend_10[t-0]`` for ``window=10``, oldest bar first,
    then ``position_share, cash_share, unrealized_return``.
    """
    bars = tuple(f"{name}[t-{window - 1 - w}]" for w in range(window) for name in FEATURE_NAMES)
    return bars + ACCOUNT_FEATURES


def describe_env(env: Any) -> tuple[tuple[str, ...] | None, dict[str, Any] | None]:
    """Feature names and data span of one of our trading envs; ``(None, None)`` for others.

    A wrapper that appends entries to each observation row names them in its
    ``appended_features`` (the options of ``rl_agents.options``): they follow
    the env's own names, innermost wrapper first.
    """
    inner = getattr(env, "unwrapped", env)
    config, frame = getattr(inner, "config", None), getattr(inner, "frame", None)
    if config is None or frame is None or not hasattr(config, "window"):
        return None, None
    appended: list[str] = []
    layer = env
    while layer is not inner and layer is not None:
        appended[:0] = getattr(layer, "appended_features", ())
        layer = getattr(layer, "env", None)
    span = {
        "source": str(frame.source),
        "symbols": list(frame.symbols),
        "first_timestamp_ns": int(frame.timestamps[0]),
        "last_timestamp_ns": int(frame.timestamps[-1]),
        "steps": int(frame.n_steps),
    }
    return trading_feature_names(config.window) + tuple(appended), span


def actor_hash(agent: SAC) -> str:
    """First 12 hex digits of the SHA-256 of the actor's weights: a version by content."""
    return weights_hash(agent.actor.state_dict())


def weights_hash(state: Mapping[str, torch.Tensor]) -> str:
    """First 12 hex digits of the SHA-256 of a ``state_dict``'s names and values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def save_checkpoint(
    path: str | Path,
    agent: SAC,
    *,
    observation_space: spaces.Space[Any],
    action_space: spaces.Space[Any],
    feature_names: Sequence[str] | None = None,
    data_span: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    version: str | None = None,
) -> Path:
    """Write ``agent`` and what it was trained for to ``path``; return the path."""
    observation = SpaceSpec.of(observation_space, feature_names)
    action = SpaceSpec.of(action_space)
    payload = {
        "format_version": FORMAT_VERSION,
        "version": version or actor_hash(agent),
        "observation": observation.to_dict(),
        "action": action.to_dict(),
        "config": agent.config.to_dict(),
        "architecture": agent.architecture(),
        "data_span": dict(data_span or {}),
        "seed": agent.config.seed,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "state": agent.state_dict(),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(target)  # never a half-written checkpoint under the real name
    return target


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A loaded checkpoint file."""

    format_version: int
    version: str
    observation: SpaceSpec
    action: SpaceSpec
    config: SACConfig
    architecture: Mapping[str, Any]
    data_span: Mapping[str, Any]
    seed: int
    metrics: Mapping[str, float]
    state: Mapping[str, Any]

    def check(
        self,
        obs_space: spaces.Space[Any] | None,
        action_space: spaces.Space[Any] | None,
        *,
        feature_names: Sequence[str] | None = None,
        path: str | Path = "checkpoint",
    ) -> None:
        """``CheckpointMismatch`` unless the checkpoint was trained for these spaces."""
        problems = []
        if obs_space is not None:
            expected = SpaceSpec.of(obs_space, feature_names)
            problems += [f"observation {p}" for p in self.observation.differences(expected)]
        if action_space is not None:
            expected = SpaceSpec.of(action_space)
            problems += [f"action {p}" for p in self.action.differences(expected)]
        if problems:
            raise CheckpointMismatch(
                f"{path} (version {self.version}) was trained for other spaces: "
                f"{'; '.join(problems)}. Serve it with the environment settings it was trained "
                "on (window, symbols, action bounds) or train a new checkpoint."
            )

    def agent(self, device: str | torch.device = "cpu") -> SAC:
        """The SAC agent of this checkpoint, on ``device``."""
        arch = self.architecture
        agent = SAC(
            _with_device(self.config, str(device)),
            int(arch["obs_dim"]),
            int(arch["action_dim"]),
            n_agents=None if arch["n_agents"] is None else int(arch["n_agents"]),
        )
        agent.load_state_dict(self.state)
        return agent


def _with_device(config: SACConfig, device: str) -> SACConfig:
    data = config.to_dict()
    data["training"]["device"] = device
    return SACConfig.from_dict(data)


def load_checkpoint(
    path: str | Path,
    expected_obs_space: spaces.Space[Any] | None = None,
    expected_action_space: spaces.Space[Any] | None = None,
    *,
    expected_feature_names: Sequence[str] | None = None,
) -> Checkpoint:
    """Read a checkpoint (onto the CPU: ``Checkpoint.agent(device)`` places the agent);
    ``CheckpointMismatch`` when it was trained for other spaces."""
    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(raw, dict) or "format_version" not in raw:
        raise CheckpointError(f"{path}: not a tradingbot SAC checkpoint (no format_version)")
    if raw["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {raw['format_version']} is newer than this code's "
            f"{FORMAT_VERSION}: upgrade tradingbot to load it"
        )
    checkpoint = Checkpoint(
        format_version=int(raw["format_version"]),
        version=str(raw["version"]),
        observation=SpaceSpec.from_dict(raw["observation"]),
        action=SpaceSpec.from_dict(raw["action"]),
        config=SACConfig.from_dict(raw["config"]),
        architecture=raw["architecture"],
        data_span=raw["data_span"],
        seed=int(raw["seed"]),
        metrics=raw["metrics"],
        state=raw["state"],
    )
    checkpoint.check(
        expected_obs_space, expected_action_space, feature_names=expected_feature_names, path=path
    )
    return checkpoint
