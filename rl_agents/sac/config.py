"""SAC hyper-parameters: one frozen value, its YAML form (the plan's appendix B) and its docs.

The YAML form nests the fields under the plan's keys::

    algorithm: SAC
    env_type: continuous
    intrinsic_curiosity: {enabled, eta, beta, ...}      # ICMConfig
    action_space: {type, low, high, smoothing}          # ActionSpaceConfig
    training: {total_timesteps, learning_rate, batch_size, buffer_size, ...}

Every other SAC field sits under ``training``. Unknown keys are refused.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from rl_agents.curiosity.config import ICMConfig
from rl_agents.her.config import HERConfig
from rl_agents.options.config import OptionsConfig
from rl_agents.rewards.config import RewardConfig


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which key and how to fix it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSpaceConfig:
    """The action space the agent is trained for (checked against the env's)."""

    type: Literal["Box"] = "Box"
    """Only continuous ``Box`` spaces: the agent's tanh output is rescaled to [low, high]."""
    low: float = -1.0
    """Lower bound of every action dimension."""
    high: float = 1.0
    """Upper bound of every action dimension."""
    smoothing: int = 3
    """Actions averaged by the environment's smoothing (core rules); recorded, not applied."""

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ConfigError(f"action_space.low must be < high, got {self.low}, {self.high}")
        if self.smoothing < 1:
            raise ConfigError(f"action_space.smoothing must be >= 1, got {self.smoothing}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SACConfig:
    """Soft actor-critic with automatic entropy tuning (Haarnoja et al. 2018)."""

    env_type: Literal["continuous", "portfolio"] = "continuous"
    """``continuous``: one policy on a single env; ``portfolio``: a FleetActor, one head per
    symbol of a PortfolioTradingEnv."""
    total_timesteps: int = 100_000
    """Environment steps of a training run."""
    learning_rate: float = 3e-4
    """Adam step size of the actor, the critics, the temperature and the ICM."""
    batch_size: int = 256
    """Transitions per gradient step."""
    buffer_size: int = 100_000
    """Transitions the replay buffer holds before it overwrites the oldest."""
    learning_starts: int = 1_000
    """Steps of uniformly random actions before the first gradient step."""
    train_freq: int = 1
    """Environment steps between two rounds of gradient steps."""
    gradient_steps: int = 1
    """Gradient steps per round."""
    gamma: float = 0.99
    """Discount factor."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before they are stored: SAC's entropy bonus is about
    one nat per step, so rewards of a per-step return (1e-3) need scaling to matter."""
    tau: float = 0.005
    """Polyak coefficient of the target critics: ``target += tau * (online - target)``."""
    target_entropy: float | Literal["auto"] = "auto"
    """Entropy the temperature tuning aims at; ``auto`` is ``-action_dim``."""
    init_alpha: float = 1.0
    """Initial temperature (entropy coefficient)."""
    actor_mean_penalty: float = 0.0
    """Weight of a penalty on the actor's squared pre-tanh mean (the policy regularisation of
    the original SAC code, 1e-3 there): keeps a policy from pinning its actions at -1 or 1,
    where the tanh's gradient vanishes; 0 turns it off."""
    actor_q: Literal["min", "mean"] = "min"
    """How the actor reads the twin critics: ``min`` (SAC and Stable-Baselines3) or ``mean``
    (REDQ's policy update, Chen et al. 2021). The critics' Bellman target always takes the
    min; the min in the actor's objective also marks down actions whose rewards are noisy
    (a buy) against ones whose rewards are certain (no trade)."""
    max_grad_norm: float = 10.0
    """Gradients are clipped to this global L2 norm before each optimizer step."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor and of each critic."""
    seed: int = 0
    """Seed of the weights, the exploration noise, replay sampling and the environment."""
    device: str = "auto"
    """``auto`` (cuda when available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""
    action_space: ActionSpaceConfig = field(default_factory=ActionSpaceConfig)
    """The action space of the environment."""
    icm: ICMConfig = field(default_factory=ICMConfig)
    """Intrinsic curiosity (YAML section ``intrinsic_curiosity``)."""
    rewards: RewardConfig = field(default_factory=RewardConfig)
    """Multi-objective and potential-based reward shaping, phase C (YAML section ``rewards``)."""
    options: OptionsConfig = field(default_factory=OptionsConfig)
    """Hierarchical trading options, phase B (YAML section ``options``)."""
    her: HERConfig = field(default_factory=HERConfig)
    """Hindsight experience replay for return goals, phase B (YAML section ``her``)."""

    def __post_init__(self) -> None:
        positive = ("total_timesteps", "batch_size", "buffer_size", "train_freq", "gradient_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"training.{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise ConfigError(f"training.learning_starts must be >= 0, got {self.learning_starts}")
        if not self.learning_rate > 0.0:
            raise ConfigError(f"training.learning_rate must be > 0, got {self.learning_rate}")
        if not (math.isfinite(self.reward_scale) and self.reward_scale > 0.0):
            raise ConfigError(f"training.reward_scale must be > 0, got {self.reward_scale}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"training.gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"training.tau must be in (0, 1], got {self.tau}")
        if not self.init_alpha > 0.0:
            raise ConfigError(f"training.init_alpha must be > 0, got {self.init_alpha}")
        if not self.actor_mean_penalty >= 0.0:
            raise ConfigError(
                f"training.actor_mean_penalty must be >= 0, got {self.actor_mean_penalty}"
            )
        if not self.max_grad_norm > 0.0:
            raise ConfigError(f"training.max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError(f"training.hidden_sizes must be >= 1 each, got {self.hidden_sizes}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as e:
                raise ConfigError(f"training.device: {e} (use auto, cpu or cuda)") from e

    def torch_device(self) -> torch.device:
        """The device to train on: ``auto`` is cuda when available, else cpu."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def entropy_target(self, action_dim: int) -> float:
        """The target entropy for ``action_dim`` action dimensions."""
        return -float(action_dim) if self.target_entropy == "auto" else self.target_entropy

    # ---------------------------------------------------------------- the YAML form

    def to_dict(self) -> dict[str, Any]:
        """The nested form of appendix B (plain types, ready for YAML or a checkpoint)."""
        training = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_TRAINING
        }
        training["hidden_sizes"] = list(self.hidden_sizes)
        return {
            "algorithm": "SAC",
            "env_type": self.env_type,
            "intrinsic_curiosity": asdict(self.icm),
            "action_space": asdict(self.action_space),
            "rewards": asdict(self.rewards),
            "options": asdict(self.options),
            "her": asdict(self.her),
            "training": training,
        }

    @classmethod
    def from_dict(cls, data: object) -> SACConfig:
        """The config of a nested dict; an unknown key or a wrong type is a ``ConfigError``."""
        top = _mapping(data, "the config", ("algorithm", *_SECTIONS, "env_type"))
        algorithm = top.get("algorithm", "SAC")
        if algorithm != "SAC":
            raise ConfigError(f"algorithm: only SAC is supported here, got {algorithm!r}")
        kwargs: dict[str, Any] = {}
        if "env_type" in top:
            kwargs["env_type"] = _coerce(cls, "env_type", top["env_type"], "env_type")
        for section, (target, kind) in _SECTIONS.items():
            if section not in top:
                continue
            known = tuple(f.name for f in fields(kind)) if kind is not cls else _TRAINING
            values = _mapping(top[section], section, known)
            parsed = {k: _coerce(kind, k, v, f"{section}.{k}") for k, v in values.items()}
            if target is None:
                kwargs.update(parsed)
            else:
                try:
                    kwargs[target] = kind(**parsed)
                except ValueError as e:  # a section's own check: name the section
                    raise ConfigError(f"{section}: {e}") from e
        try:
            return cls(**kwargs)
        except ValueError as e:
            raise ConfigError(str(e)) from e

    def to_yaml(self, path: str | Path | None = None, *, comments: bool = True) -> str:
        """The YAML template of this config, each key commented with its field's docstring;
        written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if comments:
            text = _comment(text)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, source: str | Path) -> SACConfig:
        """The config of a YAML file (a ``Path``, or a ``str`` naming an existing file) or text."""
        text = source.read_text() if isinstance(source, Path) else source
        if isinstance(source, str) and "\n" not in source and Path(source).is_file():
            text = Path(source).read_text()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML: {e}") from e
        return cls.from_dict(data)


_NOT_TRAINING = ("env_type", "action_space", "icm", "rewards", "options", "her")
"""SACConfig's fields that are sections of their own, or top-level keys."""
_TRAINING = tuple(f.name for f in fields(SACConfig) if f.name not in _NOT_TRAINING)
_SECTIONS: dict[str, tuple[str | None, type]] = {
    "intrinsic_curiosity": ("icm", ICMConfig),
    "action_space": ("action_space", ActionSpaceConfig),
    "rewards": ("rewards", RewardConfig),
    "options": ("options", OptionsConfig),
    "her": ("her", HERConfig),
    "training": (None, SACConfig),
}
"""YAML section -> (SACConfig field, or None for SACConfig's own fields; its class)."""


def _mapping(data: object, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; known keys: {', '.join(known)}")
    return data


def _coerce(kind: type, name: str, value: object, where: str) -> object:
    """``value`` as the type of field ``name`` of ``kind`` (YAML reads ``3e-4`` as a str)."""
    hint = typing.get_type_hints(kind)[name]
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    for option in options:
        literals = typing.get_args(option) if typing.get_origin(option) is Literal else ()
        if literals and value in literals:
            return value
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and not isinstance(value, bool):
            if isinstance(value, int | float):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is tuple and isinstance(value, list | tuple):
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return tuple(value)
    raise ConfigError(f"{where}: expected {_describe(hint)}, got {value!r}")


def _is_union(hint: object) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _describe(hint: object) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if _is_union(hint):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return "a list of integers"
    return getattr(hint, "__name__", str(hint))


def field_docs(kind: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(kind)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _comment(text: str) -> str:
    """YAML text with each known key preceded by its field's docstring as a comment."""
    docs = {
        "algorithm": "Only SAC.",
        "intrinsic_curiosity": field_docs(SACConfig)["icm"],
        **{f"training.{k}": v for k, v in field_docs(SACConfig).items()},
        **{f"intrinsic_curiosity.{k}": v for k, v in field_docs(ICMConfig).items()},
        **{f"action_space.{k}": v for k, v in field_docs(ActionSpaceConfig).items()},
        **{f"rewards.{k}": v for k, v in field_docs(RewardConfig).items()},
        **{f"options.{k}": v for k, v in field_docs(OptionsConfig).items()},
        **{f"her.{k}": v for k, v in field_docs(HERConfig).items()},
        "rewards": field_docs(SACConfig)["rewards"],
        "options": field_docs(SACConfig)["options"],
        "her": field_docs(SACConfig)["her"],
        "env_type": field_docs(SACConfig)["env_type"],
        "action_space": field_docs(SACConfig)["action_space"],
    }
    out, section = [], ""
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        key = line.strip().split(":", 1)[0]
        if indent == 0:
            section = key
        doc = docs.get(key if indent == 0 else f"{section}.{key}")
        if doc and ":" in line and not line.lstrip().startswith("-"):
            out.append(f"{' ' * indent}# {doc}")
        out.append(line)
    return "\n".join(out) + "\n"
