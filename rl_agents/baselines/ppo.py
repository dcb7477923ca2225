"""The discrete baselines: Stable-Baselines3 PPO (or DQN) on the ``Discrete(7)`` view of the envs.

The original fleet chose among seven discrete actions, was trained with PPO
and collapsed to 99.88% BUY_SMALL. This module trains that setup again on the
SAC fleet's training data, so the two can be compared on the same days under
the same rules (docs/baselines.md)::

    python -m rl_agents.baselines.ppo --out runs/ppo.zip
    TRADINGBOT_AGENT_POLICY=ppo:runs/ppo.zip      # served by the symbol agents
    python -m rl_agents.baselines.ppo --reward completed-trades   # the original's sparse reward
    python -m rl_agents.baselines.ppo --algorithm dqn --reward completed-trades \
        --learning-rate 0.001 --total-timesteps 300000 --validate-every 25000  # collapses

- **Data**: ``universe(load_bars(dataset), n_symbols)`` over all days (the
  symbols with a bar on every day, the universe the demo replays), split with
  ``chronological_split``; training sees only the first 70% of the days.
- **Environments**: ``n_envs`` copies of
  ``HybridActionEnv(SymbolRotationEnv(...))`` in a ``DummyVecEnv``; env i
  holds every ``n_envs``-th symbol and trades another of them each episode,
  so one shared ``MlpPolicy`` learns from all symbols. The reward is the log equity
  change (``--reward log-equity``) or a sparse completed-trade reward
  (``rl_agents.baselines.sparse``).
- **Algorithm**: ``--algorithm ppo`` (SB3's PPO) or ``dqn`` (SB3's DQN: a
  greedy argmax of learnt Q-values, epsilon-greedy while training).
- **Collapse watch**: the training monitor judges each env's sampled actions with
  the collapse detector's statistics, and every ``--validate-every`` steps the
  deterministic policy's actions on the validation days; below
  ``--pause-below`` training stops and the command exits 3 (docs/collapse.md).
- **Files**: the SB3 zip and a JSON sidecar beside it (``runs/ppo.json``)
  with the config, the symbols, the split and its days, the observation
  width and, after the CLI's evaluation, the validation action distribution.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import stable_baselines3
import torch
from gymnasium import spaces
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from core.bars import BarFrame, timestamp_ns_to_iso
from core.collapse import BINS, CollapseThresholds, action_bin
from core.features import ACCOUNT_FEATURES, N_BAR_FEATURES
from rl_agents.baselines.sparse import LOG_EQUITY, REWARDS, with_reward
from rl_agents.data import BYTETHEORY, DEFAULT_UNIVERSE, chronological_split, load_bars, universe
from rl_agents.envs import ContinuousTradingEnv, EnvConfig, HybridActionEnv
from rl_agents.envs.hybrid import CONTINUOUS_VALUE, ActionSpaceMigrator, DiscreteAction
from rl_agents.policies import Actions, Observations
from rl_agents.sac.agent import Progress
from rl_agents.training_monitor import Pause, TrainingMonitor

FORMAT = "tradingbot-ppo-baseline/1"
"""Layout of the JSON sidecar; changed on any incompatible change."""
N_ACTIONS = len(DiscreteAction)
Split = dict[str, tuple[int, int]]
ALGORITHMS: dict[str, type[PPO] | type[DQN]] = {"ppo": PPO, "dqn": DQN}
"""``PPOBaselineConfig.algorithm`` (``--algorithm``): the SB3 class it trains."""
VALIDATION = "validation"
"""``pause["env"]`` of a pause of the validation watch (the training envs are numbered)."""


class PPOFileError(ValueError):
    """A saved baseline that cannot be loaded or does not fit the observations it is given."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PPOBaselineConfig:
    """Settings of a baseline run: the data, the vectorised env and SB3 PPO's hyper-parameters."""

    algorithm: str = "ppo"
    """``ppo`` (SB3's PPO; its fields below) or ``dqn`` (SB3's DQN: learning_rate, batch_size,
    gamma, net_arch and the dqn_ fields)."""
    total_timesteps: int = 90_000
    """Environment steps over all envs (the plan's 90k-step discrete models); SB3 rounds
    up to a whole number of rollouts of ``n_steps * n_envs``."""
    n_symbols: int = DEFAULT_UNIVERSE
    """Universe size: the first N symbols (alphabetically) with a bar on every day."""
    n_envs: int = 8
    """Envs in the vectorised env; env i trades symbols i, i + n_envs, ... in turn."""
    learning_rate: float = 3e-4
    """Adam step size (SB3's default)."""
    n_steps: int = 256
    """Steps per env per rollout: 256 * 8 envs = 2048 transitions per update, SB3's
    default rollout with one env (its 2048 per env would give 5 updates in 90k steps)."""
    batch_size: int = 64
    """Minibatch size of the PPO epochs (SB3's default)."""
    n_epochs: int = 10
    """Passes over each rollout (SB3's default)."""
    gamma: float = 0.99
    """Discount factor (SB3's default)."""
    gae_lambda: float = 0.95
    """GAE smoothing (SB3's default)."""
    clip_range: float = 0.2
    """PPO's probability-ratio clip (SB3's default)."""
    ent_coef: float = 0.0
    """Entropy bonus in the loss (SB3's default: none)."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden widths of the actor and of the critic, each its own MLP (SB3's default 64,64;
    the plan's discrete actor was 256,128). On the command line: comma-separated."""
    seed: int = 0
    """Seed of the weights, the action sampling and the envs' symbol order."""
    dataset: str = BYTETHEORY
    """``bytetheory`` or a bar CSV(.gz) (docs/data.md)."""
    window: int = 10
    """Bars of features in an observation (the symbol agents' default)."""
    torch_threads: int = 1
    """Torch CPU threads while training: one is fastest for the small 64x64 MLP (two
    threads ran 40x slower on a busy 2-core machine)."""
    pause_below: float = 0.20
    """Pause training when the sampled actions of a training env fall below this normalised
    entropy (the collapse detector's diversity over its last 1,000 actions, judged from 50
    actions on, every 50 steps of each env; the plan's critical 0.20); 0 never pauses."""
    validate_every: int = 0
    """Every this many env steps, also judge the deterministic policy's actions on the
    validation days (every symbol, as ``evaluate_actions``) and pause when their diversity
    falls below ``pause_below``: the collapse a served policy would show; 0 never."""
    dqn_buffer_size: int = 100_000
    """DQN: transitions kept in its replay buffer."""
    dqn_learning_starts: int = 1_000
    """DQN: env steps taken at random before the first update."""
    dqn_train_freq: int = 1
    """DQN: one gradient step every this many steps of the vectorised env (SB3's 4)."""
    dqn_target_update_interval: int = 1_000
    """DQN: env steps between copies of the Q-network to its target (SB3's 10,000)."""
    dqn_exploration_fraction: float = 0.1
    """DQN: share of the budget over which epsilon falls from 1 (SB3's default)."""
    dqn_exploration_final_eps: float = 0.05
    """DQN: epsilon after that (SB3's default)."""
    reward: str = LOG_EQUITY
    """The training reward: ``log-equity`` (the envs' dense log equity change of every step),
    ``completed-trades`` (the original fleet's sparse reward: the realised P&L of each sell,
    net of fees, 0 on every other step) or ``round-trips`` (0 until a position is closed in
    full, then the whole trade's realised P&L); rl_agents/baselines/sparse.py."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(self.net_arch))  # a list from JSON
        if not self.net_arch or min(self.net_arch) < 1:
            raise ValueError(f"net_arch needs widths >= 1, got {self.net_arch}")
        positive = (
            "total_timesteps",
            "n_symbols",
            "n_envs",
            "n_steps",
            "batch_size",
            "n_epochs",
            "torch_threads",
            "dqn_buffer_size",
            "dqn_train_freq",
            "dqn_target_update_interval",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_envs > self.n_symbols:
            raise ValueError(
                f"n_envs ({self.n_envs}) must not exceed n_symbols ({self.n_symbols}): "
                "each env needs a symbol of its own"
            )
        if self.n_steps * self.n_envs < 2:
            raise ValueError("a rollout of n_steps * n_envs needs at least 2 transitions")
        if not self.learning_rate > 0.0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError("gamma and gae_lambda must be in [0, 1]")
        if not self.clip_range > 0.0 or self.ent_coef < 0.0:
            raise ValueError("clip_range must be > 0 and ent_coef >= 0")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 0.0 <= self.pause_below <= 1.0:
            raise ValueError(f"pause_below must be in [0, 1], got {self.pause_below}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}"
            )
        if self.validate_every < 0 or self.dqn_learning_starts < 0:
            raise ValueError("validate_every and dqn_learning_starts must be >= 0")
        if not 0.0 < self.dqn_exploration_fraction <= 1.0:
            raise ValueError(
                f"dqn_exploration_fraction must be in (0, 1], got {self.dqn_exploration_fraction}"
            )
        if not 0.0 <= self.dqn_exploration_final_eps <= 1.0:
            raise ValueError(
                f"dqn_exploration_final_eps must be in [0, 1], got {self.dqn_exploration_final_eps}"
            )
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")

    @property
    def obs_width(self) -> int:
        """Entries of one observation: ``window`` bars of features, then the account."""
        return self.window * N_BAR_FEATURES + len(ACCOUNT_FEATURES)


@dataclass(frozen=True, slots=True, kw_only=True)
class PPOTrainingInfo:
    """What a baseline was trained on, recorded in the JSON sidecar of its zip."""

    config: PPOBaselineConfig
    """The run's settings."""
    symbols: tuple[str, ...]
    """The universe, in the order of ``universe``."""
    split: Split
    """``[start, stop)`` step indices of the train, validation and test spans."""
    days: dict[str, tuple[str, str]]
    """First and last bar time (ISO, UTC) of each span."""
    obs_width: int
    """Entries of one observation."""
    timesteps: int = 0
    """Environment steps actually trained (a whole number of rollouts)."""
    train_seconds: float = 0.0
    """Wall time of ``model.learn``."""
    validation: dict[str, Any] | None = None
    """The deterministic policy's action distribution on the validation span, when measured."""
    pause: dict[str, Any] | None = None
    """Why training paused on an action collapse (``TrainingMonitor``'s ``Pause``), if it did."""
    training_diversity: float | None = None
    """The training monitor's lowest diversity over the envs when training ended."""
    validations: tuple[dict[str, Any], ...] = ()
    """The validation watch's judgements: step, then ``ActionDistribution.to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "format": FORMAT,
            "sb3_version": stable_baselines3.__version__,
            "config": dataclasses.asdict(self.config),
            "symbols": list(self.symbols),
            "split": {name: list(bounds) for name, bounds in self.split.items()},
            "days": {name: list(bounds) for name, bounds in self.days.items()},
            "obs_width": self.obs_width,
            "timesteps": self.timesteps,
            "train_seconds": self.train_seconds,
            "validation": self.validation,
            "pause": self.pause,
            "training_diversity": self.training_diversity,
            "validations": list(self.validations),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOTrainingInfo:
        """The inverse of ``to_dict``."""
        if data.get("format") != FORMAT:
            raise PPOFileError(f"sidecar format {data.get('format')!r}, expected {FORMAT!r}")
        return cls(
            config=PPOBaselineConfig(**data["config"]),
            symbols=tuple(data["symbols"]),
            split={name: (int(a), int(b)) for name, (a, b) in data["split"].items()},
            days={name: (str(a), str(b)) for name, (a, b) in data["days"].items()},
            obs_width=int(data["obs_width"]),
            timesteps=int(data["timesteps"]),
            train_seconds=float(data["train_seconds"]),
            validation=data["validation"],
            pause=data.get("pause"),
            training_diversity=data.get("training_diversity"),
            validations=tuple(data.get("validations", ())),
        )


# ---------------------------------------------------------------- data and environments


def one_symbol(frame: BarFrame, symbol: str) -> BarFrame:
    """The frame of one symbol, without timestamps where it has no bar."""
    chosen = frame.select([symbol])
    return chosen.window(0, chosen.n_steps)


def baseline_data(config: PPOBaselineConfig) -> tuple[BarFrame, Split]:
    """The universe over all days (as the evaluation replays it) and its chronological split."""
    frame = universe(load_bars(config.dataset), config.n_symbols)
    return frame, chronological_split(frame.n_steps)


class SymbolRotationEnv(ContinuousTradingEnv):
    """A ``ContinuousTradingEnv`` that trades another of its symbols each episode.

    Each reset takes the next symbol of a shuffled pass through ``frames``
    (one symbol each); a new pass is shuffled with the env's seeded
    ``np_random`` when the last one is used up or a seed is given, so every
    symbol gets the same number of episodes, up to one, in a seeded order.
    ``info["symbol"]`` names the symbol of the episode.
    """

    def __init__(self, config: EnvConfig, frames: Sequence[BarFrame]) -> None:
        if not frames:
            raise ValueError("SymbolRotationEnv needs at least one symbol's frame")
        super().__init__(config, frame=frames[0])
        rest = (ContinuousTradingEnv(config, frame=f).engine for f in frames[1:])
        self.engines = [self.engine, *rest]
        self._order: list[int] = []

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols this env takes turns on."""
        return tuple(engine.frame.symbols[0] for engine in self.engines)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Move to the next symbol and start an episode on it."""
        gym.Env.reset(self, seed=seed)
        if seed is not None or not self._order:
            self._order = [int(i) for i in self.np_random.permutation(len(self.engines))]
        self.engine = self.engines[self._order.pop()]
        self.frame = self.engine.frame
        self.symbol = self.frame.symbols[0]
        obs, info = super().reset(options=options)
        return obs, {**info, "symbol": self.symbol}


def make_training_env(config: PPOBaselineConfig, train: BarFrame) -> DummyVecEnv:
    """``n_envs`` Discrete(7) envs over the symbols of ``train``, env i on every n_envs-th one,
    each with the config's reward."""
    frames = [one_symbol(train, s) for s in train.symbols]
    env_config = EnvConfig(window=config.window, dataset=config.dataset)

    def factory(i: int) -> Callable[[], gym.Env[Any, Any]]:
        def make() -> gym.Env[Any, Any]:
            env = HybridActionEnv(SymbolRotationEnv(env_config, frames[i :: config.n_envs]))
            return Monitor(with_reward(env, config.reward))

        return make

    return DummyVecEnv([factory(i) for i in range(config.n_envs)])


# ---------------------------------------------------------------- training


class _ProgressLines(BaseCallback):
    """Prints one line per rollout: steps, speed, mean episode return, top sampled action."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        model = self.model
        if not isinstance(model, PPO):
            return  # DQN: one rollout per env step; the validation watch prints instead
        actions = model.rollout_buffer.actions.reshape(-1).astype(np.int64)
        counts = np.bincount(actions, minlength=N_ACTIONS)
        top = int(counts.argmax())
        episodes = [float(e["r"]) for e in model.ep_info_buffer or ()]
        episode = f"{np.mean(episodes):+.4f}" if episodes else "   n/a"
        rate = self.num_timesteps / (time.perf_counter() - self.started)
        print(
            f"step {self.num_timesteps:>7}/{self.total}  {rate:5.0f} steps/s  "
            f"episode return {episode}  sampled: {DiscreteAction(top).name} "
            f"{counts[top] / counts.sum():.0%}",
            flush=True,
        )


class CollapseWatch(BaseCallback):
    """The training monitor on PPO: the collapse detector's statistics of the sampled actions.

    Every step hands the action each env sampled (as its raw continuous value,
    ``CONTINUOUS_VALUE``) to a ``TrainingMonitor``, one window per env, as the
    SAC trainer does for its fleet heads; the monitor judges them every 50
    steps of each env. When a window's diversity falls below the monitor's
    critical threshold, training stops (SB3 ends ``learn``) unless ``pause``
    is False; ``monitor.pause`` says where. At each rollout's end the last
    update's losses and the policy's entropy reach the monitor's metrics.
    """

    def __init__(self, monitor: TrainingMonitor, *, pause: bool = True) -> None:
        super().__init__()
        self.monitor = monitor
        self.pause = pause
        self._losses: dict[str, float] = {}

    def _on_rollout_end(self) -> None:
        values = self.model.logger.name_to_value
        self._losses = {
            key.removeprefix("train/"): float(values[key])
            for key in ("train/policy_gradient_loss", "train/value_loss")
            if key in values
        }
        if "train/entropy_loss" in values:  # SB3 logs minus the mean entropy, in nats
            self._losses["entropy"] = -float(values["train/entropy_loss"])

    def _on_step(self) -> bool:
        actions = np.asarray(self.locals["actions"], dtype=np.int64).reshape(-1)
        progress = Progress(
            step=self.num_timesteps,
            losses=self._losses,
            episode_return=None,
            evaluation=None,
            action=CONTINUOUS_VALUE[actions],
        )
        return not (self.monitor(progress) and self.pause)


class ValidationWatch(BaseCallback):
    """The collapse a served policy would show, judged while training.

    The training monitor sees the actions the envs sampled on training days
    (with PPO's sampling or DQN's epsilon); a deterministic policy may still
    answer one action on days it has not seen. Every ``every`` env steps this
    callback runs the deterministic policy on ``frame`` (the validation days,
    every symbol, ``evaluate_actions``) and keeps the distribution; when its
    diversity falls below ``threshold`` it records ``pause`` and, if ``stop``,
    ends training.
    """

    def __init__(
        self,
        frame: BarFrame,
        *,
        every: int,
        window: int,
        obs_width: int,
        threshold: float,
        stop: bool,
        progress: bool = False,
    ) -> None:
        super().__init__()
        self.frame = frame
        self.every = every
        self.window = window
        self.obs_width = obs_width
        self.threshold = threshold
        self.stop = stop
        self.progress = progress
        self.judged: list[dict[str, Any]] = []
        self.pause: dict[str, Any] | None = None
        self._next = every

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next:
            return True
        while self._next <= self.num_timesteps:
            self._next += self.every
        policy = PPOPolicy(self.model, self.obs_width)
        result = evaluate_actions(policy, self.frame, window=self.window)
        self.judged.append({"step": self.num_timesteps, **result.to_dict()})
        if self.progress:
            print(f"step {self.num_timesteps:>7}  validation days: {result.summary()}", flush=True)
        if result.diversity >= self.threshold:
            return True
        if self.pause is None:
            self.pause = {
                "step": self.num_timesteps,
                "env": VALIDATION,
                "diversity": result.diversity,
                "threshold": self.threshold,
                "actions": result.total,
            }
        return not self.stop


def training_monitor(config: PPOBaselineConfig) -> TrainingMonitor:
    """The monitor of a run: the detector's thresholds with ``pause_below`` as the critical
    diversity, judged every 50 steps of each env (every ``50 * n_envs`` env steps)."""
    thresholds = dataclasses.replace(CollapseThresholds(), diversity_critical=config.pause_below)
    return TrainingMonitor(thresholds=thresholds, check_every=50 * config.n_envs)


def _pause_dict(pause: Pause) -> dict[str, Any]:
    return {
        "step": pause.step,
        "env": pause.agent,
        "diversity": pause.diversity,
        "threshold": pause.threshold,
        "actions": pause.actions,
    }


def train_ppo(
    config: PPOBaselineConfig,
    progress: bool = False,
    monitor: TrainingMonitor | None = None,
) -> tuple[PPO | DQN, PPOTrainingInfo]:
    """Train SB3 PPO or DQN (``MlpPolicy``, on the CPU) on the training span; print progress
    if asked.

    A ``TrainingMonitor`` (``training_monitor(config)`` unless one is given)
    watches the sampled actions, and with ``validate_every`` a ``ValidationWatch``
    the deterministic policy on the validation days; training stops early when
    either pauses on a collapse, and ``info.pause`` records the first
    (``pause_below`` 0: they only watch; ``info.validations`` keeps the watch's
    judgements).
    """
    frame, split = baseline_data(config)
    train = frame.window(*split["train"])
    model = _model(config, make_training_env(config, train))
    monitor = monitor if monitor is not None else training_monitor(config)
    watch = CollapseWatch(monitor, pause=config.pause_below > 0.0)
    callbacks: list[BaseCallback] = [watch]
    validation: ValidationWatch | None = None
    if config.validate_every:
        validation = ValidationWatch(
            frame.window(*split["validation"]),
            every=config.validate_every,
            window=config.window,
            obs_width=config.obs_width,
            threshold=config.pause_below,
            stop=config.pause_below > 0.0,
            progress=progress,
        )
        callbacks.append(validation)
    if progress:
        callbacks.append(_ProgressLines(config.total_timesteps))
    threads = torch.get_num_threads()
    torch.set_num_threads(config.torch_threads)
    started = time.perf_counter()
    try:
        model.learn(total_timesteps=config.total_timesteps, callback=CallbackList(callbacks))
    finally:
        seconds = time.perf_counter() - started
        torch.set_num_threads(threads)
    pauses = [
        p
        for p in (
            _pause_dict(monitor.pause) if monitor.pause is not None and watch.pause else None,
            validation.pause if validation is not None and validation.stop else None,
        )
        if p is not None
    ]
    info = PPOTrainingInfo(
        config=config,
        symbols=frame.symbols,
        split=split,
        days={name: _days(frame, bounds) for name, bounds in split.items()},
        obs_width=config.obs_width,
        timesteps=model.num_timesteps,
        train_seconds=seconds,
        pause=min(pauses, key=lambda p: int(p["step"])) if pauses else None,
        training_diversity=monitor.min_diversity(),
        validations=tuple(validation.judged) if validation is not None else (),
    )
    return model, info


def _model(config: PPOBaselineConfig, env: DummyVecEnv) -> PPO | DQN:
    """The untrained SB3 model of ``config.algorithm`` (``MlpPolicy``, on the CPU)."""
    common: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "gamma": config.gamma,
        "policy_kwargs": {"net_arch": list(config.net_arch)},
        "seed": config.seed,
        "device": "cpu",
    }
    if config.algorithm == "dqn":
        return DQN(
            "MlpPolicy",
            env,
            buffer_size=config.dqn_buffer_size,
            learning_starts=config.dqn_learning_starts,
            train_freq=config.dqn_train_freq,
            target_update_interval=config.dqn_target_update_interval,
            exploration_fraction=config.dqn_exploration_fraction,
            exploration_final_eps=config.dqn_exploration_final_eps,
            **common,
        )
    return PPO(
        "MlpPolicy",
        env,
        n_steps=config.n_steps,
        n_epochs=config.n_epochs,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        **common,
    )


def _days(frame: BarFrame, bounds: tuple[int, int]) -> tuple[str, str]:
    start, stop = bounds
    return (
        timestamp_ns_to_iso(int(frame.timestamps[start])),
        timestamp_ns_to_iso(int(frame.timestamps[stop - 1])),
    )


# ---------------------------------------------------------------- files


def _zip_path(path: str | Path) -> Path:
    """SB3 adds ``.zip`` to a path without it; name the file it writes."""
    p = Path(path)
    return p if p.suffix == ".zip" else p.with_name(p.name + ".zip")


def sidecar_path(path: str | Path) -> Path:
    """The JSON beside a baseline's zip: ``runs/ppo.zip`` -> ``runs/ppo.json``."""
    return _zip_path(path).with_suffix(".json")


def save_ppo(model: BaseAlgorithm, info: PPOTrainingInfo, path: str | Path) -> Path:
    """Write the SB3 zip and its JSON sidecar; return the zip's path."""
    out = _zip_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    sidecar_path(out).write_text(json.dumps(info.to_dict(), indent=2) + "\n", encoding="utf-8")
    return out


def load_ppo(path: str | Path) -> tuple[PPO | DQN, PPOTrainingInfo]:
    """The model (on the CPU) and the record of a saved baseline."""
    zip_path, sidecar = _zip_path(path), sidecar_path(path)
    if not zip_path.is_file():
        raise PPOFileError(
            f"no baseline at {zip_path} (train one: python -m rl_agents.baselines.ppo)"
        )
    if not sidecar.is_file():
        raise PPOFileError(f"{zip_path} has no sidecar {sidecar}; save baselines with save_ppo")
    try:
        info = PPOTrainingInfo.from_dict(json.loads(sidecar.read_text(encoding="utf-8")))
    except (KeyError, TypeError, ValueError) as e:
        raise PPOFileError(f"{sidecar}: not a baseline sidecar ({e})") from e
    return ALGORITHMS[info.config.algorithm].load(zip_path, device="cpu"), info


def weights_version(model: BaseAlgorithm) -> str:
    """First 12 hex digits of the SHA-256 of the policy's weights: a version by content."""
    from rl_agents.checkpoints import weights_hash

    return weights_hash(model.policy.state_dict())


# ---------------------------------------------------------------- serving


class PPOPolicy:
    """A trained baseline behind the ``Policy`` protocol: deterministic, on the CPU, batched.

    One ``model.predict(observations, deterministic=True)`` picks a discrete
    action per row (PPO's most likely action, DQN's greedy one);
    ``ActionSpaceMigrator`` turns it into its raw action (BUY_SMALL is 0.25,
    see ``rl_agents.envs.hybrid``). Its ``name`` is ``ppo-discrete`` or
    ``dqn-discrete``.
    """

    def __init__(self, model: BaseAlgorithm, obs_width: int) -> None:
        space = model.observation_space
        if not isinstance(space, spaces.Box) or space.shape != (obs_width,):
            raise PPOFileError(f"the model observes {space}, not rows of {obs_width} entries")
        if model.action_space != spaces.Discrete(N_ACTIONS):
            raise PPOFileError(f"the model acts in {model.action_space}, not Discrete(7)")
        self.model = model
        self.name = f"{'dqn' if isinstance(model, DQN) else 'ppo'}-discrete"
        self.obs_width = obs_width
        self.version = weights_version(model)
        self._migrator = ActionSpaceMigrator()

    @classmethod
    def load(cls, path: str | Path, obs_width: int | None = None) -> PPOPolicy:
        """The policy of a saved baseline, refused when it was trained for another width."""
        model, info = load_ppo(path)
        if obs_width is not None and obs_width != info.obs_width:
            raise PPOFileError(
                f"{path} was trained on observations of {info.obs_width} entries (window "
                f"{info.config.window}), the agents serve {obs_width}: set "
                f"TRADINGBOT_AGENT_WINDOW={info.config.window} or train a baseline with "
                "--window to match"
            )
        return cls(model, info.obs_width)

    def discrete(self, observations: Observations) -> npt.NDArray[np.int64]:
        """One ``DiscreteAction`` value per observation row."""
        obs = np.ascontiguousarray(observations, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_width:
            raise ValueError(f"expected observations [n, {self.obs_width}], got {obs.shape}")
        if obs.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        actions, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(actions, dtype=np.int64).reshape(-1)

    def act(self, observations: Observations) -> Actions:
        """One raw action in [-1, 1] per observation row."""
        return self._migrator.to_continuous(self.discrete(observations))


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionDistribution:
    """How often a policy chose each discrete action over a span, and what it earned."""

    counts: tuple[int, ...]
    """Actions chosen, indexed by ``DiscreteAction``."""
    mean_return: float
    """Mean over the symbols of the episode's summed reward (log of final / initial equity)."""

    @property
    def total(self) -> int:
        """Actions counted."""
        return sum(self.counts)

    @property
    def shares(self) -> dict[str, float]:
        """Share of each action, by ``DiscreteAction`` name."""
        return {a.name: self.counts[a] / max(self.total, 1) for a in DiscreteAction}

    @property
    def dominant(self) -> DiscreteAction:
        """The most frequent action."""
        return DiscreteAction(int(np.argmax(self.counts)))

    @property
    def dominant_share(self) -> float:
        """Share of the most frequent action."""
        return max(self.counts) / max(self.total, 1)

    @property
    def diversity(self) -> float:
        """The collapse detector's diversity of these actions: entropy of their histogram in
        ``core.collapse``'s bins of raw actions over ln(bins); 0 is one action only."""
        bins = np.zeros(BINS)
        for action, count in enumerate(self.counts):
            bins[action_bin(float(CONTINUOUS_VALUE[action]))] += count
        p = bins[bins > 0] / bins.sum()
        return float(-(p * np.log(p)).sum() / math.log(BINS)) if p.size else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (for the sidecar)."""
        return {
            "counts": dict(zip((a.name for a in DiscreteAction), self.counts, strict=True)),
            "shares": self.shares,
            "dominant": self.dominant.name,
            "dominant_share": self.dominant_share,
            "diversity": self.diversity,
            "mean_return": self.mean_return,
        }

    def summary(self) -> str:
        """One line: the dominant action, the diversity and the return."""
        return (
            f"dominant: {self.dominant.name} {self.dominant_share:.2%} of {self.total} actions; "
            f"diversity {self.diversity:.3f} (the detector's critical level is 0.20); "
            f"mean log return {self.mean_return:+.4f}"
        )

    def describe(self) -> str:
        """A table of the shares, then ``summary``."""
        lines = [f"  {name:<13}{share:7.2%}" for name, share in self.shares.items()]
        return "\n".join([*lines, self.summary()])


def evaluate_actions(policy: PPOPolicy, frame: BarFrame, *, window: int) -> ActionDistribution:
    """Run the policy on each symbol of ``frame`` for one episode (all its bars), in a batch.

    Every symbol trades alone from the initial cash, as in training; each step
    asks the policy once for all symbols still running.
    """
    config = EnvConfig(window=window)
    envs = [
        HybridActionEnv(ContinuousTradingEnv(config, frame=one_symbol(frame, s)))
        for s in frame.symbols
    ]
    obs = np.stack([env.reset(seed=0)[0] for env in envs])
    counts = np.zeros(N_ACTIONS, dtype=np.int64)
    returns = np.zeros(len(envs))
    running = list(range(len(envs)))
    while running:
        actions = policy.discrete(obs[running])
        counts += np.bincount(actions, minlength=N_ACTIONS)
        still: list[int] = []
        for i, action in zip(running, actions.tolist(), strict=True):
            next_obs, reward, terminated, truncated, _ = envs[i].step(action)
            obs[i] = next_obs
            returns[i] += float(reward)
            if not (terminated or truncated):
                still.append(i)
        running = still
    return ActionDistribution(
        counts=tuple(int(c) for c in counts), mean_return=float(returns.mean())
    )


# ---------------------------------------------------------------- command line


def _widths(text: str) -> tuple[int, ...]:
    """``256,128`` -> ``(256, 128)``."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated widths such as 256,128, got {text!r}"
        ) from None


def parser() -> argparse.ArgumentParser:
    """The command line: ``--out`` and one option per ``PPOBaselineConfig`` field."""
    from rl_agents.sac.config import field_docs

    p = argparse.ArgumentParser(prog="python -m rl_agents.baselines.ppo", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--out", type=Path, default=Path("runs/ppo.zip"), help="the model's zip")
    docs = field_docs(PPOBaselineConfig)
    for f in dataclasses.fields(PPOBaselineConfig):
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=_widths if isinstance(default, tuple) else type(default),
            default=default,
            help=f"{docs.get(f.name, '')} (default: {shown})",
        )
    return p


def main(argv: list[str] | None = None) -> int:
    """Train, measure the action distribution on the validation span, save.

    Exit codes: 0 finished, 2 bad options, 3 paused on an action collapse (the
    diversity of an env's sampled actions, or with ``--validate-every`` of the
    deterministic actions on the validation days, fell below
    ``--pause-below``; the zip holds the weights it paused with and the sidecar
    the pause), as ``tradingbot train`` for SAC.
    """
    args = parser().parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(PPOBaselineConfig)}
    try:
        config = PPOBaselineConfig(**values)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{config.algorithm.upper()} on Discrete(7): {config.n_symbols} symbols in "
        f"{config.n_envs} envs, {config.total_timesteps} steps, seed {config.seed}",
        flush=True,
    )
    model, info = train_ppo(config, progress=True)
    frame, split = baseline_data(config)
    validation = frame.window(*split["validation"])
    result = evaluate_actions(PPOPolicy(model, info.obs_width), validation, window=config.window)
    info = dataclasses.replace(info, validation=result.to_dict())
    path = save_ppo(model, info, args.out)
    start, stop = split["validation"]
    first, last = info.days["validation"]
    print(
        f"trained {info.timesteps} steps in {info.train_seconds:.0f} s "
        f"({info.timesteps / info.train_seconds:.0f} steps/s); saved {path}\n"
        f"deterministic actions on the validation span (steps {start}-{stop}, "
        f"{first[:10]} to {last[:10]}, {frame.n_symbols} symbols):\n{result.describe()}"
    )
    if info.pause is None:
        lowest = info.training_diversity
        print(
            "training monitor: lowest diversity of an env's sampled actions "
            + ("n/a" if lowest is None else f"{lowest:.3f}")
            + f" (pauses below {config.pause_below})"
        )
        return 0
    pause = info.pause
    seen = (
        "the deterministic actions on the validation days"
        if pause["env"] == VALIDATION
        else f"env {pause['env']}'s sampled actions"
    )
    print(
        f"paused: the diversity of {seen}, {pause['diversity']:.2f}, fell "
        f"below {pause['threshold']} at step {pause['step']} (collapse); {path} holds the "
        "weights it paused with",
        file=sys.stderr,
    )
    return 3


if __name__ == "__main__":
    sys.exit(main())
