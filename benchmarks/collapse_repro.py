"""Does the original collapse come back from training? Sparse vs dense discrete PPO vs SAC.

The original discrete fleet collapsed to 99.88% BUY_SMALL; the plan's lessons
blame rewards paid only on completed trades and the spamming of discrete
sizes. This benchmark trains the discrete PPO baseline (``rl_agents.baselines.ppo``)
on the same days with the same seed and budget once per reward, then serves
every policy on the held-out days and prints one table::

    .venv/bin/python -m benchmarks.collapse_repro                  # 20k steps, seed 0
    .venv/bin/python -m benchmarks.collapse_repro --timesteps 90000 --seed 1
    .venv/bin/python -m benchmarks.collapse_repro --algorithm dqn --learning-rate 0.001 \
        --timesteps 100000 --validate-every 25000        # DQN: the collapse, trained

Rows (``--rewards`` picks the trained ones, ``--algorithm`` trains them with
SB3's PPO or DQN):

- ``<algorithm> completed-trades``: paid the realised P&L of every sell, 0 otherwise;
- ``<algorithm> round-trips``: paid only when a position is closed in full;
- ``<algorithm> log-equity``: the default dense reward (log equity change of every step);
- ``sac fleet``: the shipped continuous SAC fleet (``--sac``), trained on the
  same 70% of the days with the dense reward: the cure;
- ``always BUY_SMALL``: the staged collapse of the demo, for scale.

Training: ``PPOBaselineConfig`` defaults (143 symbols in 8 envs, SB3's PPO
hyper-parameters, no entropy bonus unless ``--ent-coef``) with the training
monitor watching the sampled actions but never pausing, so every row trains
the full budget; ``paused at`` is where it would have paused (an env's
diversity below 0.20), ``train div`` its lowest diversity at the end. With
``--validate-every N`` the deterministic policy is also judged on the
validation days every N steps (``ValidationWatch``); ``val paused at`` is the
first judgement below 0.20.

Held-out days: steps 171-245 of the 143-symbol universe (the validation and
test spans, never trained on), all symbols in one ``PortfolioTradingEnv``
book from the initial cash, as the pipeline serves them (73 decisions per
symbol). Columns, from the actions the policies answered (raw, binned as the
collapse detector bins them):

- ``dominant``: the most frequent action (bin) and its share of all actions;
- ``diversity``: the detector's normalised entropy of all actions (20 bins);
- ``agent div min/med``: the same per symbol (each symbol is one agent);
- ``alerted``: agents the detector's thresholds would alert on (any metric,
  ``core.collapse.evaluate`` on each symbol's window), and how many of them
  with a critical entropy (diversity < 0.20);
- ``alerts by metric``: agents alerted on each metric (dominance, entropy,
  repeats, trade_frequency);
- ``trades``: share of actions that led to a fill;
- ``return``: log of the book's final over initial equity.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.actions import classify
from core.bars import BarFrame, timestamp_ns_to_iso
from core.collapse import (
    BINS,
    METRICS,
    ActionWindow,
    CollapseThresholds,
    action_bin,
    evaluate,
)
from rl_agents.baselines.ppo import (
    ALGORITHMS,
    PPOBaselineConfig,
    PPOPolicy,
    baseline_data,
    train_ppo,
    training_monitor,
)
from rl_agents.baselines.sparse import COMPLETED_TRADES, LOG_EQUITY, REWARDS, ROUND_TRIPS
from rl_agents.envs import EnvConfig, PortfolioTradingEnv
from rl_agents.envs.hybrid import CONTINUOUS_VALUE, DiscreteAction
from rl_agents.policies import Policy, make_policy

SAC_FLEET = Path("rl_agents/fleets/sac-fleet.pt")
CRITICAL = CollapseThresholds().diversity_critical


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """What one policy did on the held-out days."""

    name: str
    actions: int
    dominant: str
    """The most frequent action: a discrete action's name, else its bin's range."""
    dominant_share: float
    diversity: float
    agent_diversity_min: float
    agent_diversity_median: float
    alerted: int
    """Agents with any alert by the detector's thresholds."""
    by_metric: dict[str, int]
    """Agents alerted on each metric (``core.collapse.METRICS``), the metrics with any."""
    critical: int
    """Agents whose diversity is below the critical 0.20."""
    agents: int
    trade_frequency: float
    log_return: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Trained:
    """What the training monitor saw of one PPO run."""

    steps: int
    seconds: float
    diversity: float | None
    """The lowest diversity over the envs' sampled actions at the end of training."""
    paused_at: int | None
    """The step where an env's diversity first fell below 0.20 (training did not stop)."""
    validation_paused_at: int | None
    """The first judgement of the validation watch below 0.20 (None: none, or not watched)."""


def held_out(frame: BarFrame, split: dict[str, tuple[int, int]]) -> BarFrame:
    """The validation and test days together: everything after the training span."""
    return frame.window(split["validation"][0], frame.n_steps)


def _bin_name(b: int) -> str:
    values = [a for a in DiscreteAction if action_bin(float(CONTINUOUS_VALUE[a])) == b]
    if values:
        return values[0].name
    width = 2.0 / BINS
    return f"[{-1 + b * width:+.1f},{-1 + (b + 1) * width:+.1f})"


def _diversity(counts: npt.NDArray[np.int64]) -> float:
    p = counts[counts > 0] / counts.sum()
    return max(0.0, float(-(p * np.log(p)).sum() / math.log(BINS))) if p.size else 0.0


def serve(name: str, policy: Policy, frame: BarFrame, *, window: int = 10) -> Served:
    """Run ``policy`` on every symbol of ``frame`` in one book; the detector's statistics."""
    env = PortfolioTradingEnv(EnvConfig(window=window), frame=frame)
    obs, _ = env.reset(seed=0)
    start = float(env.engine.equity)
    windows = [ActionWindow(1000) for _ in frame.symbols]
    counts = np.zeros(BINS, dtype=np.int64)
    fills = actions = 0
    t = 0
    done = False
    while not done:
        raw = np.asarray(policy.act(obs), dtype=np.float64)
        obs, _, terminated, truncated, _ = env.step(raw)
        engine = env.engine
        kinds = classify(engine.smoothed, env.config.rules.hold_threshold)
        for i, w in enumerate(windows):
            if not frame.present[t, i]:
                continue  # no bar to decide on: the agent is not asked
            w.add(raw=float(raw[i]), kind=int(kinds[i]), step=t)
            counts[action_bin(float(raw[i]))] += 1
            actions += 1
            if engine.quantity[i] != 0.0:
                w.mark_filled(t)
                fills += 1
            w.settle_through(t)
        t += 1
        done = terminated or truncated
    stats = [w.stats() for w in windows]
    limits = CollapseThresholds()
    verdicts = [evaluate(s, limits) for s in stats]
    diversities = np.array([s.diversity for s in stats])
    top = int(counts.argmax())
    return Served(
        name=name,
        actions=actions,
        dominant=_bin_name(top),
        dominant_share=float(counts[top] / max(actions, 1)),
        diversity=_diversity(counts),
        agent_diversity_min=float(diversities.min()),
        agent_diversity_median=float(np.median(diversities)),
        alerted=sum(any(b is not None for b in v.values()) for v in verdicts),
        by_metric={m: n for m in METRICS if (n := sum(v[m] is not None for v in verdicts))},
        critical=int((diversities < limits.diversity_critical).sum()),
        agents=len(windows),
        trade_frequency=fills / max(actions, 1),
        log_return=math.log(float(env.engine.equity) / start),
    )


def train(config: PPOBaselineConfig) -> tuple[PPOPolicy, Trained]:
    """Train one baseline with the monitor watching (pausing never) and measure it."""
    watch_only = dataclasses.replace(config, pause_below=0.0)
    monitor = training_monitor(dataclasses.replace(config, pause_below=CRITICAL))
    started = time.perf_counter()
    model, info = train_ppo(watch_only, monitor=monitor)
    below = [int(v["step"]) for v in info.validations if v["diversity"] < CRITICAL]
    trained = Trained(
        steps=info.timesteps,
        seconds=time.perf_counter() - started,
        diversity=monitor.min_diversity(),
        paused_at=monitor.pause.step if monitor.pause is not None else None,
        validation_paused_at=below[0] if below else None,
    )
    return PPOPolicy(model, info.obs_width), trained


def table(rows: Sequence[tuple[Served, Trained | None]]) -> str:
    """The markdown table of the rows."""
    head = (
        "| policy | dominant action | share | diversity | agent div min / med | alerted "
        "(critical) | alerts by metric | trades | return | train div | paused at | "
        "val paused at |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for served, trained in rows:
        if trained is None:
            train_div = paused = validation = "-"
        else:
            train_div = "n/a" if trained.diversity is None else f"{trained.diversity:.2f}"
            paused = "never" if trained.paused_at is None else str(trained.paused_at)
            validation = (
                "never"
                if trained.validation_paused_at is None
                else str(trained.validation_paused_at)
            )
        metrics = ", ".join(f"{m} {n}" for m, n in served.by_metric.items()) or "none"
        lines.append(
            f"| {served.name} | {served.dominant} | {served.dominant_share:.1%} | "
            f"{served.diversity:.3f} | {served.agent_diversity_min:.2f} / "
            f"{served.agent_diversity_median:.2f} | {served.alerted}/{served.agents} "
            f"({served.critical}) | {metrics} | {served.trade_frequency:.1%} | "
            f"{served.log_return:+.4f} | "
            f"{train_div} | {paused} | {validation} |"
        )
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.collapse_repro",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="ppo")
    p.add_argument("--timesteps", type=int, default=20_000, help="training steps per reward")
    p.add_argument("--learning-rate", type=float, default=3e-4, help="Adam's step size")
    p.add_argument(
        "--validate-every", type=int, default=0, help="judge the validation days every N steps"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rewards",
        default=f"{COMPLETED_TRADES},{ROUND_TRIPS},{LOG_EQUITY}",
        help=f"comma-separated PPO rewards, of {', '.join(REWARDS)}",
    )
    p.add_argument("--ent-coef", type=float, default=0.0, help="PPO's entropy bonus")
    p.add_argument("--n-steps", type=int, default=256, help="PPO steps per env per rollout")
    p.add_argument("--sac", type=Path, default=SAC_FLEET, help="the SAC fleet checkpoint")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train one PPO per reward, serve every policy on the held-out days, print the table."""
    args = _parse(argv)
    rewards = [r.strip() for r in args.rewards.split(",") if r.strip()]
    unknown = [r for r in rewards if r not in REWARDS]
    if unknown:
        print(f"error: unknown rewards {unknown} (known: {', '.join(REWARDS)})", file=sys.stderr)
        return 2
    base = PPOBaselineConfig(
        algorithm=args.algorithm, total_timesteps=args.timesteps, seed=args.seed,
        ent_coef=args.ent_coef, n_steps=args.n_steps, learning_rate=args.learning_rate,
        validate_every=args.validate_every,
    )  # fmt: skip
    frame, split = baseline_data(base)
    days = held_out(frame, split)
    rows: list[tuple[Served, Trained | None]] = []
    for reward in rewards:
        policy, trained = train(dataclasses.replace(base, reward=reward))
        print(
            f"trained {args.algorithm} {reward}: {trained.steps} steps in {trained.seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        rows.append(
            (serve(f"{args.algorithm} {reward}", policy, days, window=base.window), trained)
        )
    if args.sac.is_file():
        sac = make_policy(f"sac:{args.sac}", window=base.window)
        rows.append((serve("sac fleet", sac, days, window=base.window), None))
    else:
        print(f"no SAC fleet at {args.sac}: its row is left out", file=sys.stderr)
    staged = make_policy("always-buy-small", window=base.window)
    rows.append((serve("always BUY_SMALL", staged, days, window=base.window), None))
    first, last = (int(days.timestamps[0]), int(days.timestamps[-1]))
    print(
        f"{args.algorithm.upper()}: {args.timesteps} steps per reward, seed {args.seed}, "
        f"learning rate {args.learning_rate}, ent_coef {args.ent_coef} and n_steps "
        f"{args.n_steps} (PPO); held-out days {timestamp_ns_to_iso(first)[:10]} to "
        f"{timestamp_ns_to_iso(last)[:10]}, {days.n_symbols} symbols in one book\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
