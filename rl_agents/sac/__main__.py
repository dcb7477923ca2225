"""Train SAC on a gymnasium env and save a checkpoint: ``python -m rl_agents.sac``.

Every option comes from ``SACConfig`` (its YAML keys, its field docstrings
as help)::

    python -m rl_agents.sac --template > sac.yaml        # the commented YAML template
    python -m rl_agents.sac --config sac.yaml --out runs/sac.pt
    python -m rl_agents.sac --training.total_timesteps 20000 --intrinsic_curiosity.enabled true
    python -m rl_agents.sac --env_type portfolio --symbols 10   # a fleet of 10 symbols

``--env`` picks the environment (a gymnasium id; ``tradingbot/...`` ids are
registered by ``rl_agents``); env_type portfolio defaults to the portfolio env,
trained on the universe the evaluation uses. Beside the checkpoint, the run's
record (``<out>`` with the suffix ``.jsonl``) gets one JSON line per
evaluation and every ``--record-every`` steps, and a last line with the
outcome (docs/sac.md). ``--mlflow`` (or ``--mlflow-uri URI``) tracks the same
points, the checkpoint and the record in MLflow (docs/tracking.md).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import yaml
from prometheus_client import start_http_server
from tqdm import tqdm

import rl_agents  # noqa: F401 - registers the trading environments
from core.bars import BarDataError
from core.collapse import CollapseThresholds
from core.gates import GateLimits
from rl_agents.checkpoints import describe_env, save_checkpoint
from rl_agents.curiosity.config import ICMConfig
from rl_agents.data import (
    DEFAULT_UNIVERSE,
    chronological_split,
    days_option,
    load_bars,
    universe,
)
from rl_agents.envs import EnvConfig, PortfolioTradingEnv
from rl_agents.her.config import HERConfig
from rl_agents.options.config import OptionsConfig
from rl_agents.phases import training_env
from rl_agents.rewards.config import RewardConfig
from rl_agents.sac.agent import Progress, TrainingDiverged, train
from rl_agents.sac.config import ActionSpaceConfig, ConfigError, SACConfig, field_docs
from rl_agents.selection import CheckpointSelector
from rl_agents.training_monitor import Pause, RunRecord, TrainingMonitor

if TYPE_CHECKING:
    from rl_agents.tracking import TrainingTracker

SECTIONS: dict[str, type] = {
    "intrinsic_curiosity": ICMConfig,
    "action_space": ActionSpaceConfig,
    "rewards": RewardConfig,
    "options": OptionsConfig,
    "her": HERConfig,
    "training": SACConfig,
}
"""YAML sections and the dataclass whose fields they hold."""
SKIP = {"training": {"env_type", "action_space", "icm", "rewards", "options", "her"}}
DEFAULT_ENVS = {
    "continuous": "tradingbot/ContinuousTrading-v0",
    "portfolio": "tradingbot/PortfolioTrading-v0",
}


PORTFOLIO = DEFAULT_ENVS["portfolio"]

OnPause = Callable[[Pause, Path], None]
"""Called with the pause and the saved checkpoint when training pauses on a collapse."""


def _span(dataset: str, offset: int, bounds: tuple[int, int]) -> EnvConfig:
    start, stop = bounds
    return EnvConfig(dataset=dataset, start=offset + start, steps=stop - start)


def make_envs(
    env_id: str,
    n_symbols: int,
    config: SACConfig | None = None,
    *,
    dataset: str | None = None,
    days: tuple[int, int] | None = None,
) -> tuple[gym.Env[Any, Any], gym.Env[Any, Any], dict[str, tuple[int, int]] | None]:
    """The training env, the validation env and the chronological split they come from.

    Both envs are wrapped in the phases ``config`` switches on
    (``rl_agents.phases.training_env``).

    The portfolio env trades the universe of the whole data (the first
    ``n_symbols`` symbols with a bar on every day), the one ``tradingbot demo``
    and the evaluation use, cut into train / validation / test days; the test
    days are never seen. Other ``tradingbot/`` envs cut the data the same way;
    any other id gets two plain instances and no split. ``dataset`` (a bar file;
    the bundled bytetheory year by default) and ``days`` (``[start, stop)`` of
    its timestamps; all by default) choose the data the split is cut from: a
    walk-forward fold is one such slice.
    """
    env, eval_env, split = _plain_envs(env_id, n_symbols, dataset or EnvConfig().dataset, days)
    if config is not None:
        env, eval_env = training_env(env, config), training_env(eval_env, config)
    return env, eval_env, split


def _plain_envs(
    env_id: str, n_symbols: int, dataset: str, days: tuple[int, int] | None
) -> tuple[gym.Env[Any, Any], gym.Env[Any, Any], dict[str, tuple[int, int]] | None]:
    start, steps = (0, None) if days is None else (days[0], days[1] - days[0])
    if env_id == PORTFOLIO:
        frame = universe(load_bars(dataset), n_symbols, start=start, steps=steps)
        split = chronological_split(frame.n_steps)
        config = EnvConfig(dataset=dataset, n_symbols=n_symbols)
        env = gym.make(env_id, frame=frame.window(*split["train"]), config=config)
        eval_env = gym.make(env_id, frame=frame.window(*split["validation"]), config=config)
        return env, eval_env, split
    if env_id.startswith("tradingbot/"):
        # Train on the first 70% of the days, evaluate on the next 15%, never see the last 15%.
        n_steps = load_bars(dataset).n_steps if steps is None else steps
        split = chronological_split(n_steps)
        env = gym.make(env_id, config=_span(dataset, start, split["train"]))
        eval_env = gym.make(env_id, config=_span(dataset, start, split["validation"]))
        return env, eval_env, split
    return gym.make(env_id), gym.make(env_id), None


def updates_at(config: SACConfig, step: int) -> int:
    """Gradient steps ``train`` has taken after ``step`` environment steps."""
    rounds = step // config.train_freq - config.learning_starts // config.train_freq
    return max(0, rounds) * config.gradient_steps


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line: one ``--section.key`` option per config field."""
    p = argparse.ArgumentParser(prog="python -m rl_agents.sac", description=__doc__)
    p.add_argument("--config", type=Path, help="a YAML config (the template's keys)")
    p.add_argument("--template", action="store_true", help="print the YAML template and exit")
    p.add_argument("--env", help="gymnasium env id (default: by env_type)")
    p.add_argument("--out", type=Path, default=Path("runs/sac.pt"), help="checkpoint path")
    p.add_argument("--eval-every", type=int, default=5_000, help="steps between evaluations")
    p.add_argument(
        "--symbols",
        type=_positive,
        default=None,
        metavar="N",
        help=f"fleet size of the portfolio env: the first N symbols with a bar on every day "
        f"(default {DEFAULT_UNIVERSE}, the evaluation's universe)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        metavar="PATH",
        help="bar file to train on (a CSV/Parquet layout `tradingbot data inspect` reads; "
        "default: the bundled bytetheory year)",
    )
    p.add_argument(
        "--days",
        type=days_option,
        default=None,
        metavar="START:STOP",
        help="train on timestamps [START, STOP) of the data only (a walk-forward fold); the "
        "70/15/15 split is cut from that slice (default: all)",
    )
    p.add_argument(
        "--select-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="portfolio env: every STEPS steps, replay the validation days with the "
        "deterministic policy and keep the weights that pass the evaluation's hard gates with "
        "a margin (--select-margin) and the best validation return; the checkpoint holds "
        "those (default 500 for the portfolio env; 0: save the last weights)",
    )
    p.add_argument(
        "--select-margin",
        type=float,
        default=0.05,
        metavar="M",
        help="how far inside each hard gate a validation must be to be selected: dominance "
        "<= 0.60-M, diversity > 0.40+M, trade frequency in [0.05+M, 0.60-M] (default 0.05)",
    )
    p.add_argument(
        "--record-every",
        type=int,
        default=1_000,
        metavar="STEPS",
        help="steps between progress lines of the run record (0: at evaluations only)",
    )
    p.add_argument(
        "--metrics-port", type=int, default=0, help="serve the trainer's /metrics here (0: no)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    tracking = p.add_mutually_exclusive_group()
    tracking.add_argument(
        "--mlflow",
        action="store_true",
        help="track the run in MLflow, in the local store beside the checkpoint "
        "(sqlite:///<folder of --out>/mlflow.db; docs/tracking.md)",
    )
    tracking.add_argument(
        "--mlflow-uri",
        metavar="URI",
        help="track the run in MLflow at this tracking URI (http://host:5000, sqlite:///path.db)",
    )
    p.add_argument(
        "--mlflow-experiment",
        metavar="NAME",
        help="MLflow experiment of the run (default 'tradingbot'; implies --mlflow "
        "without --mlflow-uri)",
    )
    p.add_argument(
        "--no-collapse-pause",
        action="store_true",
        help="keep training when the actions collapse (diversity below --pause-below)",
    )
    p.add_argument(
        "--pause-below",
        type=_share,
        default=CollapseThresholds().diversity_critical,
        metavar="DIVERSITY",
        help="pause when an agent's action diversity (normalised entropy, judged from 50 "
        "actions on) falls below this critical threshold (default %(default)s)",
    )
    p.add_argument(
        "--env_type",
        help=f"{field_docs(SACConfig)['env_type']} (default: {SACConfig().env_type})",
    )
    for section, kind in SECTIONS.items():
        group = p.add_argument_group(section)
        defaults = kind()
        for name, doc in field_docs(kind).items():
            if name not in SKIP.get(section, ()):
                default = str(getattr(defaults, name)).replace("%", "%%")
                text = doc.replace("%", "%%")  # "95% value at risk": argparse formats help with %
                group.add_argument(
                    f"--{section}.{name}", metavar="VALUE", help=f"{text} (default: {default})"
                )
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


def main(argv: list[str] | None = None, on_pause: OnPause | None = None) -> int:
    """Train, evaluate, save; print progress every evaluation and keep the run's record.

    Exit codes: 0 finished, 2 bad options or data, 3 paused on an action
    collapse (the checkpoint holds the state; ``on_pause`` was called with the
    pause and the checkpoint's path), 4 diverged (no checkpoint).
    """
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
    try:
        GateLimits().tightened(args.select_margin)
    except ValueError as e:
        print(f"error: --select-margin: {e}", file=sys.stderr)
        return 2
    if args.symbols is not None and env_id != PORTFOLIO:
        print(f"error: --symbols sizes the fleet of {PORTFOLIO}, not {env_id}", file=sys.stderr)
        return 2
    try:
        env, eval_env, split = make_envs(
            env_id, args.symbols or DEFAULT_UNIVERSE, config, dataset=args.dataset, days=args.days
        )
    except BarDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names, span = describe_env(env)
    if span is not None and split is not None:
        span["split"] = {name: list(bounds) for name, bounds in split.items()}
    symbols = tuple(span["symbols"]) if span is not None else ()
    shape = env.action_space.shape or (1,)
    n_agents = shape[0] if config.env_type == "portfolio" else 1
    try:
        tracker = _tracker(args, config, env_id, n_agents, span)
    except ConfigError as e:  # a TrackingError: the URI cannot be used
        print(f"error: {e}", file=sys.stderr)
        return 2

    thresholds = dataclasses.replace(CollapseThresholds(), diversity_critical=args.pause_below)
    monitor = TrainingMonitor(thresholds=thresholds, symbols=symbols)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=monitor.registry)
    record_path = args.out.with_suffix(".jsonl")
    print(f"run record: {record_path}")
    bar = tqdm(
        total=config.total_timesteps, desc="train", unit="step", disable=args.no_progress,
        file=sys.stderr, mininterval=1.0,
    )  # fmt: skip
    with bar, RunRecord(record_path) as record, tracker or contextlib.nullcontext():
        record.start(
            env=env_id,
            agents=n_agents,
            symbols=list(symbols),
            split=span.get("split") if span else None,
            checkpoint=str(args.out),
            config=config.to_dict(),
        )
        last_step = 0
        every = 500 if args.select_every is None else args.select_every
        selector = (
            CheckpointSelector(
                eval_env, every, after=config.learning_starts, margin=args.select_margin
            )
            if isinstance(eval_env.unwrapped, PortfolioTradingEnv) and every > 0
            else None
        )

        def report(progress: Progress) -> bool:
            nonlocal last_step
            last_step = progress.step
            bar.update(1)
            validation = selector(progress) if selector is not None else None
            if validation is not None and selector is not None:
                record.write(
                    "validation",
                    progress.step,
                    **validation.to_dict(),
                    selectable=selector.selectable(validation),
                )
                if tracker is not None:
                    tracker.log_validation(validation, selector.selectable(validation))
            if progress.evaluation is not None:
                losses = ", ".join(f"{k} {v:.4g}" for k, v in progress.losses.items())
                bar.write(f"step {progress.step}: eval return {progress.evaluation:.4g} ({losses})")
            paused = monitor(progress) and not args.no_collapse_pause
            every = args.record_every > 0 and progress.step % args.record_every == 0
            if progress.evaluation is not None or every or paused:
                record.progress(
                    progress.step,
                    progress.losses,
                    eval_return=progress.evaluation,
                    min_action_diversity=monitor.min_diversity(),
                    updates=updates_at(config, progress.step),
                )
                if tracker is not None:
                    tracker.log_progress(
                        progress, monitor, env, updates=updates_at(config, progress.step)
                    )
            return paused

        try:
            result = train(env, config, report, eval_env=eval_env, eval_every=args.eval_every)
        except TrainingDiverged as e:
            monitor.metrics.nan_losses.inc()
            record.end("diverged", last_step, update=e.step, loss=e.loss, error=str(e))
            if tracker is not None:
                tracker.finish(
                    "diverged",
                    last_step,
                    summary={"update": e.step},
                    artifacts=(record_path,),
                    tags={"diverged.loss": e.loss, "error": str(e)},
                )
            print(f"stopped: {e}", file=sys.stderr)
            return 4
        metrics = {"eval_return": result.final_return or 0.0, "steps": float(result.steps)}
        # A paused run keeps the weights it paused with: they are what needs looking at.
        paused_run = monitor.pause is not None and not args.no_collapse_pause
        if selector is not None and selector.history and not paused_run:
            chosen = selector.restore(result.agent)
            if chosen is None:
                print(
                    f"selection: no validation of the {len(selector.history)} passed the hard "
                    f"gates with margin {selector.margin}; the checkpoint holds the last weights",
                    file=sys.stderr,
                )
                record.write("selection", result.steps, selected=None)
            else:
                print(
                    f"selection: the weights of step {chosen.step} passed the hard gates (margin "
                    f"{selector.margin}) on the validation days with the best return "
                    f"({chosen.total_return:+.2%}, "
                    f"diversity {chosen.diversity:.2f}, max dominance {chosen.dominant_bin:.2f}, "
                    f"trade frequency {chosen.trade_frequency:.2f}); the checkpoint holds them",
                )
                record.write(
                    "selection",
                    result.steps,
                    selected_step=chosen.step,
                    margin=selector.margin,
                    **chosen.to_dict(),
                )
                metrics["selected_step"] = float(chosen.step)
                metrics["selection_margin"] = selector.margin
                metrics["validation_return"] = chosen.total_return
                metrics["validation_diversity"] = chosen.diversity
                metrics["validation_dominant_bin"] = chosen.dominant_bin
                metrics["validation_trade_frequency"] = chosen.trade_frequency
        pause = monitor.pause if not args.no_collapse_pause else None
        if pause is not None:
            metrics["paused_at_step"] = float(pause.step)
            metrics["paused_diversity"] = pause.diversity
        path = save_checkpoint(
            args.out,
            result.agent,
            observation_space=env.observation_space,
            action_space=env.action_space,
            feature_names=names,
            data_span=span,
            metrics={**metrics, "train_seconds": result.seconds},
        )
        seconds = max(result.seconds, 1e-9)
        rates = {
            "steps_per_s": result.steps / seconds,
            "updates_per_s": result.agent.updates / seconds,
            "transitions_per_s": result.steps * n_agents / seconds,
        }
        print(
            f"saved {path} after {result.steps} steps ({rates['steps_per_s']:.1f} steps/s, "
            f"{rates['updates_per_s']:.1f} updates/s, {rates['transitions_per_s']:.0f} "
            f"transitions/s); the last weights' eval return {result.final_return:.4g}"
        )
        summary = {
            "eval_return": result.final_return,
            "updates": result.agent.updates,
            "train_seconds": result.seconds,
            "eval_seconds": result.eval_seconds,
            **rates,
            "checkpoint": str(path),
        }
        final = {**metrics, **summary}
        if pause is None:
            record.end("finished", result.steps, **summary)
            if tracker is not None:
                tracker.finish(
                    "finished", result.steps, summary=final, artifacts=(path, record_path)
                )
            return 0
        record.paused(pause, path)
        record.end("paused", result.steps, **summary)
        if tracker is not None:
            tracker.finish(
                "paused",
                result.steps,
                summary=final,
                artifacts=(path, record_path),
                tags={"pause.agent": pause.agent_name},
            )
    print(
        f"paused: agent {pause.agent_name}'s action diversity {pause.diversity:.2f} fell below "
        f"{pause.threshold} at step {pause.step} (collapse); the checkpoint holds the state",
        file=sys.stderr,
    )
    if on_pause is not None:
        on_pause(pause, path)
    return 3


def _tracker(
    args: argparse.Namespace,
    config: SACConfig,
    env_id: str,
    n_agents: int,
    span: dict[str, Any] | None,
) -> TrainingTracker | None:
    """The MLflow run the options ask for, its setup logged; None without ``--mlflow*``."""
    if not (args.mlflow or args.mlflow_uri or args.mlflow_experiment):
        return None
    from rl_agents.tracking import DEFAULT_EXPERIMENT, TrainingTracker, local_store

    tracker = TrainingTracker.start(
        args.mlflow_uri or local_store(args.out),
        args.mlflow_experiment or DEFAULT_EXPERIMENT,
        args.out.stem,
        tags={"checkpoint": str(args.out), "env": env_id},
    )
    options = {
        "dataset": args.dataset,
        "days": None if args.days is None else f"{args.days[0]}:{args.days[1]}",
        "eval_every": args.eval_every,
        "record_every": args.record_every,
        "select_every": 500 if args.select_every is None else args.select_every,
        "select_margin": args.select_margin,
        "pause_below": args.pause_below,
        "collapse_pause": not args.no_collapse_pause,
        "checkpoint": str(args.out),
    }
    with contextlib.ExitStack() as failed:
        failed.push(tracker)  # a failure to log the setup ends the run FAILED
        tracker.log_setup(
            config,
            env_id=env_id,
            agents=n_agents,
            span=span,
            options={k: v for k, v in options.items() if v is not None},
        )
        failed.pop_all()
    return tracker


if __name__ == "__main__":
    sys.exit(main())
