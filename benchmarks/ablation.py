"""The ablation of phases A to C: plain SAC, +ICM, +rewards, +options, +HER, over seeds and folds.

Run with ``.venv/bin/python -m benchmarks.ablation`` (defaults: the five arms,
seeds 1 to 5, the fleet recipe ``rl_agents/sac/templates/fleet_sac.yaml`` cut
to ``--steps`` steps, on the bundled bytetheory year). Each arm adds one piece
to the arm before it. Every (fold, arm, seed) is trained by ``tradingbot
train`` (in-process, ``rl_agents.sac.__main__.main``: the 70/15/15 split,
checkpoint selection on the validation days) and then replayed over the
fold's held-out test days through the streaming pipeline on a real Kafka
broker this script starts (``services.evaluation``, the code of ``tradingbot
evaluate``); buy-and-hold is replayed once per fold as the reference.

``--dataset ../shared/data/us_equities_1d.csv.gz --folds 7 --fold-days 750``
is the walk-forward over the shared daily file: fold k trains and evaluates
on days ``[k*750, (k+1)*750)`` (each cut 70/15/15), ``--symbols`` symbols
with a bar on every day of the fold.

The table gives, per arm, the mean and standard deviation over seeds (and
folds) and the worst and best run, never the best draw alone; the plan's
phase gates and final targets are judged on the means. The JSON of every run
goes to ``--json`` (default ``benchmarks/results/ablation-<stamp>.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import platform
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.gates import GateTable
from rl_agents.data import BYTETHEORY, load_bars
from rl_agents.sac.config import SACConfig
from services import kafka
from services.demo import ensure_kafka, kafka_script, new_run_id
from services.evaluation import Contender, held_out_frame, replay, sac_contender
from services.ports import free_ports

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "rl_agents" / "sac" / "templates" / "fleet_sac.yaml"
ARMS: dict[str, dict[str, dict[str, Any]]] = {
    "plain": {},
    "icm": {"intrinsic_curiosity": {"enabled": True}},
    "rewards": {"intrinsic_curiosity": {"enabled": True}, "rewards": {"enabled": True}},
    "options": {
        "intrinsic_curiosity": {"enabled": True},
        "rewards": {"enabled": True},
        "options": {"enabled": True},
    },
    "her": {
        "intrinsic_curiosity": {"enabled": True},
        "rewards": {"enabled": True},
        "options": {"enabled": True},
        "her": {"enabled": True},
    },
    "her0": {
        "intrinsic_curiosity": {"enabled": True},
        "rewards": {"enabled": True},
        "options": {"enabled": True},
        "her": {"enabled": True, "k": 0},
    },
}
"""Each arm's sections switched on over the recipe; every arm adds one piece to the one before,
except ``her0``, the control of the HER gate: the same goals without relabelling (k = 0)."""
LABELS = {
    "plain": "plain SAC",
    "icm": "+ICM",
    "rewards": "+rewards",
    "options": "+options",
    "her": "+HER",
    "her0": "+HER k=0",
}
METRICS: tuple[tuple[str, str, str], ...] = (
    ("total return", "total_return", "pct"),
    ("Sharpe (annual)", "sharpe", "num"),
    ("max drawdown", "max_drawdown", "pct"),
    ("win rate", "win_rate", "pct"),
    ("action diversity", "diversity", "num"),
    ("dominant-bin share", "dominant_bin", "pct"),
    ("trade frequency", "trade_frequency", "pct"),
    ("profitable agents", "profitable_share", "pct"),
)
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("Sharpe >= 0.8", "sharpe", ">=", 0.8),
    ("max drawdown < 15%", "max_drawdown", "<", 0.15),
    ("win rate > 45%", "win_rate", ">", 0.45),
    ("profitable agents > 35% (the plan: 50 of 143)", "profitable_share", ">", 50 / 143),
)
"""The plan's final validation targets, judged on an arm's mean."""


@dataclass(frozen=True, slots=True)
class Fold:
    """A slice of the data: training, validation and test are cut 70/15/15 from it."""

    index: int
    days: tuple[int, int] | None
    """``[start, stop)`` of the data's timestamps; None: all of it."""


@dataclass
class Run:
    """One trained and evaluated (fold, arm, seed)."""

    fold: int
    arm: str
    seed: int
    exit_code: int
    train_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    """What the served policy reports of its phases on the test days (option usage, HER
    success, ...)."""
    training: dict[str, float] = field(default_factory=dict)
    """What the phases measured on the training env (MLflow: ``rewards/``, ``her/``, ...)."""
    test_days: str = ""


def arm_config(arm: str, seed: int, steps: int, template: Path = TEMPLATE) -> SACConfig:
    """The recipe with ``arm``'s pieces on, ``seed`` and ``steps`` training steps."""
    data = SACConfig.from_yaml(template).to_dict()
    for section, values in ARMS[arm].items():
        data[section].update(values)
    data["training"]["seed"] = seed
    data["training"]["total_timesteps"] = steps
    data["training"]["learning_starts"] = min(data["training"]["learning_starts"], steps // 4)
    return SACConfig.from_dict(data)


def folds(dataset: str, count: int, fold_days: int | None) -> list[Fold]:
    """``count`` consecutive folds of ``fold_days`` timestamps (one fold of all data by default)."""
    if fold_days is None:
        return [Fold(0, None)]
    n = load_bars(dataset).n_steps
    found = [Fold(k, (k * fold_days, (k + 1) * fold_days)) for k in range(count)]
    usable = [f for f in found if f.days is not None and f.days[1] <= n]
    if len(usable) < count:
        raise SystemExit(
            f"{dataset} has {n} timestamps: room for {n // fold_days} folds of {fold_days}, "
            f"not {count}"
        )
    return usable


def train_one(
    config: SACConfig,
    out: Path,
    *,
    dataset: str,
    symbols: int,
    days: tuple[int, int] | None,
    select_every: int,
) -> tuple[int, float, dict[str, float]]:
    """``tradingbot train`` of one config, tracked in MLflow beside the checkpoint.

    Returns the exit code, the wall seconds and the run's last training metrics
    of the phases (``rewards/``, ``options/``, ``her/``: what each piece's
    ``report(env)`` measured on the training env), read back from MLflow.
    """
    from mlflow.tracking import MlflowClient

    from rl_agents.sac.__main__ import main as train_main

    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_suffix(".yaml")
    config.to_yaml(path, comments=False)
    argv = [
        "--config", str(path), "--out", str(out), "--no-progress", "--no-collapse-pause",
        "--symbols", str(symbols), "--dataset", dataset, "--select-every", str(select_every),
        "--eval-every", str(config.total_timesteps), "--record-every", "0",
    ]  # fmt: skip
    if days is not None:
        argv += ["--days", f"{days[0]}:{days[1]}"]
    uri = f"sqlite:///{out.parent.resolve() / 'mlflow.db'}"
    argv += ["--mlflow-uri", uri, "--mlflow-experiment", "ablation"]
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = train_main(argv)
    seconds = time.perf_counter() - began
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ablation")
    found = (
        client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.mlflow.runName = '{out.stem}'"
        )
        if experiment is not None
        else []
    )
    metrics = {
        k: float(v)
        for k, v in (found[0].data.metrics.items() if found else ())
        if k.split("/", 1)[0] in ("rewards", "options", "her")
    }
    return code, seconds, metrics


def fleet_metrics(table: GateTable) -> dict[str, float]:
    """The table's fleet row, with the profitable agents as a share."""
    fleet = asdict(table.fleet)
    row = {k: float(v) for k, v in fleet.items() if isinstance(v, int | float)}
    row["profitable_share"] = table.fleet.profitable_agents / max(1, table.fleet.agents)
    return row


def phase_report(policy: Any) -> dict[str, float]:
    """What the served policy (or the policies it wraps) reports of its phases."""
    found: dict[str, float] = {}
    seen: set[int] = set()
    while policy is not None and id(policy) not in seen:
        seen.add(id(policy))
        report = getattr(policy, "report", None)
        if callable(report):
            found.update({k: float(v) for k, v in report().items()})
        policy = getattr(policy, "inner", None)
    return found


async def evaluate_one(
    bootstrap: str, path: Path, dataset: str, symbols: int, days: tuple[int, int] | None
) -> tuple[dict[str, float], dict[str, float], str]:
    """Replay a checkpoint over its fold's test days: the fleet row, phase reports, the days."""
    frame, _ = held_out_frame(dataset, symbols, "test", days)
    contender = sac_contender(path, frame)
    table = await replay(bootstrap, frame, contender, new_run_id("ablation"))
    return fleet_metrics(table), phase_report(contender.policy), _days(frame)


async def reference(
    bootstrap: str, dataset: str, symbols: int, days: tuple[int, int] | None
) -> dict[str, float]:
    """Buy-and-hold over the fold's test days."""
    from rl_agents.baselines.reference import BuyAndHoldPolicy

    frame, _ = held_out_frame(dataset, symbols, "test", days)
    table = await replay(
        bootstrap, frame, Contender("buy-and-hold", BuyAndHoldPolicy()), new_run_id("ablation")
    )
    return fleet_metrics(table)


def _days(frame: Any) -> str:
    first, last = (
        datetime.fromtimestamp(int(t) / 1e9, UTC).strftime("%Y-%m-%d")
        for t in (frame.timestamps[0], frame.timestamps[-1])
    )
    return f"{first} to {last} ({frame.n_steps} days)"


def spread(values: Sequence[float]) -> tuple[float, float, float, float]:
    """Mean, standard deviation (0 for one value), min and max of the finite values."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return (math.nan,) * 4
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return statistics.fmean(finite), sd, min(finite), max(finite)


def _fmt(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.1%}" if kind == "pct" else f"{value:.2f}"


def table(runs: Sequence[Run], references: dict[int, dict[str, float]]) -> str:
    """The markdown table: per arm, mean +- sd [min, max] of each metric over its runs."""
    arms = [a for a in ARMS if any(r.arm == a for r in runs)]
    header = ["metric", *(f"{LABELS[a]} (n={sum(r.arm == a for r in runs)})" for a in arms)]
    header.append("buy-and-hold")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, key, kind in METRICS:
        cells = [name]
        for arm in arms:
            mean, sd, lo, hi = spread([r.metrics.get(key, math.nan) for r in runs if r.arm == arm])
            cells.append(
                f"{_fmt(mean, kind)} ± {_fmt(sd, kind)} [{_fmt(lo, kind)}, {_fmt(hi, kind)}]"
            )
        ref, *_ = spread([m.get(key, math.nan) for m in references.values()])
        cells.append(_fmt(ref, kind))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fold_table(runs: Sequence[Run], references: dict[int, dict[str, float]]) -> str:
    """Per walk-forward fold: each arm's total return (mean +- sd over its seeds) against
    buy-and-hold on the same test days, and in how many folds each arm's mean beat it."""
    arms = [a for a in ARMS if any(r.arm == a for r in runs)]
    header = ["fold (test days)", *(LABELS[a] for a in arms), "buy-and-hold"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    beat = dict.fromkeys(arms, 0)
    for index in sorted(references):
        ref = references[index].get("total_return", math.nan)
        days = next((r.test_days for r in runs if r.fold == index and r.test_days), "")
        cells = [f"{index} ({days})" if days else str(index)]
        for arm in arms:
            mean, sd, *_ = spread(
                [r.metrics.get("total_return", math.nan) for r in runs
                 if r.fold == index and r.arm == arm]
            )  # fmt: skip
            beat[arm] += bool(mean > ref)
            cells.append(f"{_fmt(mean, 'pct')} ± {_fmt(sd, 'pct')}")
        cells.append(_fmt(ref, "pct"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "| folds beating buy-and-hold | "
        + " | ".join(f"{beat[a]} of {len(references)}" for a in arms)
        + " | |"
    )
    return "\n".join(lines)


def phase_gates(runs: Sequence[Run]) -> list[tuple[str, str, str, str]]:
    """The plan's phase gates and final targets: (gate, arm, measured, pass/fail/not measured)."""
    rows: list[tuple[str, str, str, str]] = []
    by_arm = {a: [r for r in runs if r.arm == a] for a in ARMS}
    for gate, key, op, limit in TARGETS:
        for arm, found in by_arm.items():
            if not found:
                continue
            mean, *_ = spread([r.metrics.get(key, math.nan) for r in found])
            rows.append((gate, LABELS[arm], f"{mean:.3f}", _verdict(mean, op, limit)))
    for arm in ("options", "her", "her0"):
        found = by_arm[arm]
        if not found:
            continue
        usage = [
            min((v for k, v in r.phases.items() if k.startswith("usage/")), default=math.nan)
            for r in found
        ]
        least, *_ = spread(usage)
        rows.append(
            ("B: every option used > 10% (least-used share)", LABELS[arm], f"{least:.3f}",
             _verdict(least, ">", 0.10))
        )  # fmt: skip
        persistence, *_ = spread([r.phases.get("persistence/mean", math.nan) for r in found])
        rows.append(
            ("B: option persistence > 5 steps", LABELS[arm], f"{persistence:.2f}",
             _verdict(persistence, ">", 5.0))
        )  # fmt: skip
    for arm in ("rewards", "options", "her", "her0"):
        found = by_arm[arm]
        if not found:
            continue
        least_active, *_ = spread(
            [
                min(
                    (v for k, v in r.training.items() if k.endswith("_active")),
                    default=math.nan,
                )
                for r in found
            ]
        )
        rows.append(
            ("C: every objective active (least-active share of steps)", LABELS[arm],
             f"{least_active:.3f}", _verdict(least_active, ">", 0.0))
        )  # fmt: skip
        stability, *_ = spread(
            [r.training.get("rewards/weight_stability", math.nan) for r in found]
        )
        rows.append(
            ("C: weight stability < 10% (largest spread)", LABELS[arm], f"{stability:.3f}",
             _verdict(stability, "<", 0.10))
        )  # fmt: skip
        flags, *_ = spread([r.training.get("rewards/hacking_flags", math.nan) for r in found])
        rows.append(
            ("C: no reward hacking (objectives flagged)", LABELS[arm], f"{flags:.2f}",
             _verdict(flags, "<", 0.5))
        )  # fmt: skip
    success = {
        arm: (
            spread([r.training.get("her/her_success_rate", math.nan) for r in by_arm[arm]])[0],
            spread([r.phases.get("her_served_success_rate", math.nan) for r in by_arm[arm]])[0],
        )
        for arm in ("her", "her0")
        if by_arm[arm]
    }
    for arm, (trained, served) in success.items():
        rows.append(("B: goal success rate, training episodes", LABELS[arm], f"{trained:.3f}",
                     "measured"))  # fmt: skip
        rows.append(("B: goal success rate, served test days", LABELS[arm], f"{served:.3f}",
                     "measured"))  # fmt: skip
    if "her" in success:
        if "her0" not in success:
            rows.append(("B: HER improvement > 30% success (against k = 0)", LABELS["her"], "",
                         "not measured: run the her0 arm"))  # fmt: skip
        else:
            for where, index in (("training episodes", 0), ("served test days", 1)):
                her, control = success["her"][index], success["her0"][index]
                gain = improvement(her, control)
                verdict = _verdict(gain, ">", 0.30)
                if max(her, control) < MIN_SUCCESS:
                    verdict = f"not measured: success below {MIN_SUCCESS:.0%} in both arms"
                rows.append(
                    (f"B: HER improvement > 30% success (against k = 0), {where}",
                     LABELS["her"], f"{gain:+.3f}", verdict)
                )  # fmt: skip
    return rows


MIN_SUCCESS = 0.01
"""Below this success rate in both arms a ratio of them is noise: the HER gate is not judged."""


def improvement(value: float, control: float) -> float:
    """``value``'s relative gain over ``control`` (0.3: 30% more); +inf when only the control
    is 0, 0 when both are, NaN when either was not measured."""
    if not (math.isfinite(value) and math.isfinite(control)):
        return math.nan
    if control == 0.0:
        return math.inf if value > 0.0 else 0.0
    return value / control - 1.0


def _verdict(value: float, op: str, limit: float) -> str:
    if math.isnan(value):
        return "not measured"
    ok = {">=": value >= limit, "<": value < limit, ">": value > limit}[op]
    return "pass" if ok else "fail"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {list(ARMS)}")
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds (default 1..5)")
    p.add_argument("--steps", type=int, default=3_000, help="training steps per run")
    p.add_argument("--dataset", default=BYTETHEORY, help="bytetheory or a bar file")
    p.add_argument("--symbols", type=int, default=143, help="fleet size (full-coverage symbols)")
    p.add_argument("--folds", type=int, default=1, help="walk-forward folds (with --fold-days)")
    p.add_argument("--fold-days", type=int, default=None, help="timestamps per fold")
    p.add_argument("--select-every", type=int, default=500, help="checkpoint selection period")
    p.add_argument("--template", type=Path, default=TEMPLATE, help="the recipe (YAML)")
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "ablation")
    p.add_argument("--json", type=Path, default=None, help="where the runs go (JSON)")
    p.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    p.add_argument("--bootstrap", default=None, help="use this running broker (default: start one)")
    p.add_argument(
        "--tables-of", type=Path, nargs="+", default=None, metavar="JSON",
        help="only print the tables of past ablations' --json, one table (nothing is trained)",
    )  # fmt: skip
    return p.parse_args(argv)


def write_runs(
    path: Path,
    stamp: str,
    args: argparse.Namespace,
    references: dict[int, dict[str, float]],
    runs: Sequence[Run],
) -> None:
    """The runs so far as JSON (rewritten after every run, so a cut-short ablation keeps them)."""
    document = {
        "benchmark": "ablation",
        "when": stamp,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "args": {k: str(v) for k, v in vars(args).items()},
        "references": references,
        "runs": [asdict(r) for r in runs],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(document, indent=2))
    partial.replace(path)


@contextlib.contextmanager
def broker(bootstrap: str | None = None) -> Iterator[str]:
    """``bootstrap``, or a Kafka of this benchmark's own on a free port, stopped at the end."""
    # A new broker's first group and offset calls are retried; aiokafka logs each retry.
    for name in ("aiokafka.consumer.fetcher", "aiokafka.consumer.group_coordinator"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if bootstrap is not None:
        asyncio.run(kafka.create_topics(bootstrap))
        yield bootstrap
        return
    (port,) = free_ports(1)
    bootstrap, started = ensure_kafka(None, port)
    try:
        asyncio.run(kafka.create_topics(bootstrap))
        yield bootstrap
    finally:
        if started:
            kafka_script("stop", port)


def tables(
    runs: Sequence[Run],
    references: dict[int, dict[str, float]],
    seeds: int,
    steps: int | str,
    symbols: int | str,
    dataset: str,
) -> str:
    """Everything the benchmark prints: the arms' table, the folds' table, the gates."""
    return "\n\n".join(
        [
            f"Held-out test days per fold; {seeds} seeds x {len(references)} fold(s), "
            f"{steps} training steps, {symbols} symbols, data {dataset}.",
            table(runs, references),
            *([fold_table(runs, references)] if len(references) > 1 else []),
            "| gate | arm | measured (mean) | verdict |\n|---|---|---|---|\n"
            + "\n".join(f"| {g} | {a} | {m} | {v} |" for g, a, m, v in phase_gates(runs)),
        ]
    )


def tables_of(*paths: Path) -> str:
    """The tables of the runs past ablations wrote (their ``--json``), judged by this code.

    Several files are one table (more seeds of the same folds, or more arms): they must
    agree on the data, the fleet, the training steps and the folds' buy-and-hold.
    """
    documents = [json.loads(path.read_text()) for path in paths]
    first = documents[0]
    same = ("dataset", "symbols", "steps", "folds", "fold_days")
    references = {int(k): v for k, v in first["references"].items()}
    for path, document in zip(paths[1:], documents[1:], strict=True):
        theirs = {int(k): v for k, v in document["references"].items()}
        differ = [k for k in same if document["args"].get(k) != first["args"].get(k)]
        if differ or theirs != references:
            raise ValueError(
                f"{path} is not a run of the same ablation as {paths[0]} "
                f"({', '.join(differ) if differ else 'buy-and-hold of the folds'} differ)"
            )
    runs = [Run(**r) for document in documents for r in document["runs"]]
    keys = [(r.fold, r.arm, r.seed) for r in runs]
    if len(set(keys)) < len(keys):
        raise ValueError("the files hold the same (fold, arm, seed) twice")
    args = first["args"]
    seeds = len({r.seed for r in runs})
    return tables(runs, references, seeds, args["steps"], args["symbols"], args["dataset"])


def main(argv: list[str] | None = None) -> int:
    """Train and evaluate every (fold, arm, seed); print and write the tables."""
    args = _parse(argv)
    if args.tables_of:
        try:
            print(tables_of(*args.tables_of))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        print(f"error: unknown arm(s) {unknown}; known: {list(ARMS)}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out_dir = args.runs_dir / stamp
    json_path = args.json or REPO / "benchmarks" / "results" / f"ablation-{stamp}.json"
    runs: list[Run] = []
    references: dict[int, dict[str, float]] = {}
    with broker(args.bootstrap) as bootstrap:
        for fold in folds(args.dataset, args.folds, args.fold_days):
            references[fold.index] = asyncio.run(
                reference(bootstrap, args.dataset, args.symbols, fold.days)
            )
            for arm in arms:
                for seed in seeds:
                    config = arm_config(arm, seed, args.steps, args.template)
                    path = out_dir / f"fold{fold.index}-{arm}-seed{seed}.pt"
                    code, seconds, trained = train_one(
                        config, path, dataset=args.dataset, symbols=args.symbols,
                        days=fold.days, select_every=args.select_every,
                    )  # fmt: skip
                    run = Run(fold.index, arm, seed, code, seconds, training=trained)
                    if code in (0, 3) and path.is_file():
                        run.metrics, run.phases, run.test_days = asyncio.run(
                            evaluate_one(bootstrap, path, args.dataset, args.symbols, fold.days)
                        )
                    runs.append(run)
                    write_runs(json_path, stamp, args, references, runs)  # kept if cut short
                    print(
                        f"fold {fold.index} {LABELS[arm]:<10} seed {seed}: exit {code}, "
                        f"{seconds:.0f}s, return {run.metrics.get('total_return', math.nan):+.2%}"
                        f", diversity {run.metrics.get('diversity', math.nan):.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    text = tables(runs, references, len(seeds), args.steps, args.symbols, args.dataset)
    print(text)
    write_runs(json_path, stamp, args, references, runs)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")
    print(f"runs: {json_path}", file=sys.stderr)
    return 0 if all(r.exit_code in (0, 3) for r in runs) else 1


if __name__ == "__main__":
    # A SIGTERM unwinds like Ctrl-C, so the broker started here is stopped and the runs kept.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
