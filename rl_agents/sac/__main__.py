"""Train SAC on a gymnasium env and save a checkpoint: ``python -m rl_agents.sac``.

Every option comes from ``SACConfig`` (its YAML keys, its field docstrings
as help)::

    python -m rl_agents.sac --template > sac.yaml        # the commented YAML template
    python -m rl_agents.sac --config sac.yaml --out runs/sac.pt
    python -m rl_agents.sac --training.total_timesteps 20000 --intrinsic_curiosity.enabled true

``--env`` picks the environment (a gymnasium id; ``tradingbot/...`` ids are
registered by ``rl_agents``); env_type portfolio defaults to the portfolio env.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from prometheus_client import start_http_server

import rl_agents  # noqa: F401 - registers the trading environments
from rl_agents.checkpoints import describe_env, save_checkpoint
from rl_agents.curiosity.config import ICMConfig
from rl_agents.data import chronological_split, load_bars
from rl_agents.envs import EnvConfig
from rl_agents.sac.agent import Progress, TrainingDiverged, train
from rl_agents.sac.config import ActionSpaceConfig, ConfigError, SACConfig, field_docs
from rl_agents.training_monitor import TrainingMonitor

SECTIONS: dict[str, type] = {
    "intrinsic_curiosity": ICMConfig,
    "action_space": ActionSpaceConfig,
    "training": SACConfig,
}
"""YAML sections and the dataclass whose fields they hold."""
SKIP = {"training": {"env_type", "action_space", "icm"}}
DEFAULT_ENVS = {
    "continuous": "tradingbot/ContinuousTrading-v0",
    "portfolio": "tradingbot/PortfolioTrading-v0",
}


def _span(bounds: tuple[int, int]) -> EnvConfig:
    start, stop = bounds
    return EnvConfig(start=start, steps=stop - start)


def parser() -> argparse.ArgumentParser:
    """The command line: one ``--section.key`` option per config field."""
    p = argparse.ArgumentParser(prog="python -m rl_agents.sac", description=__doc__)
    p.add_argument("--config", type=Path, help="a YAML config (the template's keys)")
    p.add_argument("--template", action="store_true", help="print the YAML template and exit")
    p.add_argument("--env", help="gymnasium env id (default: by env_type)")
    p.add_argument("--out", type=Path, default=Path("runs/sac.pt"), help="checkpoint path")
    p.add_argument("--eval-every", type=int, default=5_000, help="steps between evaluations")
    p.add_argument(
        "--metrics-port", type=int, default=0, help="serve the trainer's /metrics here (0: no)"
    )
    p.add_argument(
        "--no-collapse-pause",
        action="store_true",
        help="keep training when the actions collapse (entropy below the critical 0.20)",
    )
    p.add_argument("--env_type", help=field_docs(SACConfig)["env_type"])
    for section, kind in SECTIONS.items():
        group = p.add_argument_group(section)
        for name, doc in field_docs(kind).items():
            if name not in SKIP.get(section, ()):
                group.add_argument(f"--{section}.{name}", metavar="VALUE", help=doc)
    return p


def config_of(args: argparse.Namespace) -> SACConfig:
    """The config file (or the defaults) with the command line's values on top."""
    data: dict[str, Any] = (
        SACConfig.from_yaml(args.config).to_dict() if args.config else SACConfig().to_dict()
    )
    if args.env_type is not None:
        data["env_type"] = args.env_type
    for key, value in vars(args).items():
        section, _, name = key.partition(".")
        if name and value is not None:
            data[section][name] = yaml.safe_load(value)  # "3e-4", "true", "[64, 64]"
    return SACConfig.from_dict(data)


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate, save; print progress every evaluation."""
    args = parser().parse_args(argv)
    try:
        config = config_of(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.template:
        print(config.to_yaml(), end="")
        return 0
    env_id = args.env or DEFAULT_ENVS[config.env_type]
    split: dict[str, tuple[int, int]] | None = None
    if env_id.startswith("tradingbot/"):
        # Train on the first 70% of the days, evaluate on the next 15%, never see the last 15%.
        split = chronological_split(load_bars(EnvConfig().dataset).n_steps)
        env = gym.make(env_id, config=_span(split["train"]))
        eval_env = gym.make(env_id, config=_span(split["validation"]))
    else:
        env = gym.make(env_id)
        eval_env = gym.make(env_id)

    monitor = TrainingMonitor()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=monitor.registry)

    def report(progress: Progress) -> bool:
        if progress.evaluation is not None:
            losses = ", ".join(f"{k} {v:.4g}" for k, v in progress.losses.items())
            print(f"step {progress.step}: eval return {progress.evaluation:.4g} ({losses})")
        paused = monitor(progress)
        return paused and not args.no_collapse_pause

    try:
        result = train(env, config, report, eval_env=eval_env, eval_every=args.eval_every)
    except TrainingDiverged as e:
        monitor.metrics.nan_losses.inc()
        print(f"stopped: {e}", file=sys.stderr)
        return 4
    names, span = describe_env(env)
    if span is not None and split is not None:
        span["split"] = {name: list(bounds) for name, bounds in split.items()}
    metrics = {"eval_return": result.final_return or 0.0, "steps": float(result.steps)}
    if monitor.pause is not None and not args.no_collapse_pause:
        metrics["paused_at_step"] = float(monitor.pause.step)
        metrics["paused_diversity"] = monitor.pause.diversity
    path = save_checkpoint(
        args.out,
        result.agent,
        observation_space=env.observation_space,
        action_space=env.action_space,
        feature_names=names,
        data_span=span,
        metrics={**metrics, "train_seconds": result.seconds},
    )
    print(
        f"saved {path} after {result.steps} steps ({result.steps / result.seconds:.0f} steps/s), "
        f"eval return {result.final_return:.4g}"
    )
    if "paused_at_step" in metrics:
        pause = monitor.pause
        assert pause is not None
        print(
            f"paused: agent {pause.agent}'s action diversity {pause.diversity:.2f} fell below "
            f"{pause.threshold} at step {pause.step} (collapse); the checkpoint holds the state",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
