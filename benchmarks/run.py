"""Benchmark runner: prints a table; run with ``make bench`` (or ``python benchmarks/run.py``).

Entries:

1. ``lockstep replay, in-process``: the demo's data (143 symbols x 245 days)
   through the real Kafka broker, the three services in one event loop.
2. ``lockstep replay, processes``: the same through ``tradingbot demo``'s
   three service processes (what a user runs), wall time of the replay steps.
3. ``offline baseline``: the same policy and the same ``core`` rules without
   a broker (one Python loop); the ratio to it is what streaming costs. The
   baseline's ledger must equal the streaming one, fill for fill.

The machine is noisy: every entry is the median of ``--repeat`` runs, and
the ratios compare runs made in the same invocation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.bars import BarFrame
from core.events import (
    AccountMarked,
    BarClosed,
    Event,
    PortfolioClosed,
    PortfolioOpened,
    StepCompleted,
)
from core.rules import TradingRules
from core.step import Input, StepState, decide, fold, is_input
from rl_agents.data import load_bars, universe
from services.config import KafkaConfig
from services.kafka import create_topics, read_run
from services.market_replay.app import MarketReplay, ReplayConfig, step_bars
from services.pipeline import run_lockstep
from services.symbol_agent.app import AgentConfig, SymbolAgent
from streams.topics import PORTFOLIO_EVENTS

REPO = Path(__file__).resolve().parents[1]
KAFKA = REPO / "deploy" / "local" / "kafka" / "kafka.sh"


@dataclass
class Row:
    """One line of the table."""

    name: str
    seconds: float
    steps: int
    bars: int
    note: str = ""

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def bars_per_s(self) -> float:
        return self.bars / self.seconds


def offline(frame: BarFrame, run_id: str, rules: TradingRules) -> tuple[list[Event], float]:
    """The step aggregate (``core.step``) and the agent's decisions in one loop, no broker."""
    began = time.perf_counter()
    agent = SymbolAgent(KafkaConfig(run_id=run_id), AgentConfig(), rules)
    replay = MarketReplay(KafkaConfig(run_id=run_id), ReplayConfig(metrics_port=0), frame)
    state = StepState(run_id=run_id, portfolio_id="main", rules=rules)
    events: list[Event] = []

    def feed(item: Input) -> list[Event]:
        nonlocal state
        new = decide(state, item)
        state = fold(new, state)
        out = [e for e in new if not is_input(e)]
        events.extend(out)
        return out

    (opened,) = feed(replay._started())  # noqa: SLF001 - the replay's own event, minus Kafka
    assert isinstance(opened, PortfolioOpened)
    agent._open(opened)  # noqa: SLF001 - the agent's own state transition, minus Kafka
    for step in range(frame.n_steps):
        bars = {b.symbol: b for b in step_bars(frame, run_id, step)}
        marked = [e for b in bars.values() for e in feed(b) if isinstance(e, AccountMarked)]
        for action in agent.decide(step, bars, marked[-1]):
            feed(action)
    return [e for e in events if not isinstance(e, StepCompleted)], time.perf_counter() - began


def _median(times: list[float]) -> float:
    return statistics.median(times)


def _start_kafka(port: int, data_dir: str) -> dict[str, str]:
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA_DIR": data_dir, "KAFKA_FRESH": "1"}
    subprocess.run(["bash", str(KAFKA), "start"], env=env, check=True, capture_output=True)
    return env


def main() -> None:
    """Run the benchmarks and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=143)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--port", type=int, default=39392)
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks" / "results" / "latest.json"
    )
    args = parser.parse_args()

    frame = universe(load_bars("bytetheory"), args.symbols, steps=args.steps)
    bars = int(frame.present.sum())
    rules = TradingRules()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-kafka-") as data_dir:
        env = _start_kafka(args.port, data_dir)
        bootstrap = f"127.0.0.1:{args.port}"
        try:
            asyncio.run(create_topics(bootstrap))
            inproc: list[float] = []
            streamed: list[Event] = []
            for i in range(args.repeat):
                run_id = f"bench-inproc-{i}"
                _, seconds = asyncio.run(
                    run_lockstep(bootstrap=bootstrap, run_id=run_id, frame=frame, rules=rules)
                )
                inproc.append(seconds)
                if i == 0:
                    streamed = asyncio.run(
                        read_run(bootstrap, PORTFOLIO_EVENTS.name, run_id, until=PortfolioClosed)
                    )
            rows.append(
                Row("lockstep replay, in-process services", _median(inproc), frame.n_steps, bars)
            )
            procs = _time(lambda: _demo(bootstrap, args), args.repeat)
            rows.append(
                Row("lockstep replay, service processes", procs, frame.n_steps, bars,
                    "tradingbot demo, replay steps only")
            )  # fmt: skip
        finally:
            subprocess.run(["bash", str(KAFKA), "stop"], env=env, capture_output=True)

    base: list[float] = []
    baseline_events: list[Event] = []
    for _ in range(args.repeat):
        baseline_events, seconds = offline(frame, "bench-inproc-0", rules)
        base.append(seconds)
    same = _strip(baseline_events) == _strip(streamed)
    rows.append(
        Row("offline baseline (same core, no broker)", _median(base), frame.n_steps, bars,
            "ledger identical to streaming: " + ("yes" if same else "NO"))
    )  # fmt: skip
    _print(rows, frame, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "rows": [
                    r.__dict__ | {"steps_per_s": r.steps_per_s, "bars_per_s": r.bars_per_s}
                    for r in rows
                ],
            },
            indent=2,
        )
    )
    if not same:
        sys.exit("the offline baseline's ledger differs from the streaming run")


def _strip(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, BarClosed)]


def _time(fn: Callable[[], float], repeat: int) -> float:
    return _median([fn() for _ in range(repeat)])


def _demo(bootstrap: str, args: argparse.Namespace) -> float:
    """Run ``tradingbot demo`` against the broker; return the replay's own step time."""
    with tempfile.TemporaryDirectory(prefix="tb-bench-demo-") as out:
        command = [
            sys.executable, "-m", "services.cli", "demo", "--bootstrap", bootstrap,
            "--symbols", str(args.symbols), "--no-progress", "--no-monitoring", "--no-database",
            "--runs-dir", out,
        ]  # fmt: skip
        if args.steps:
            command += ["--steps", str(args.steps)]
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        log = next(Path(out).glob("*/market-replay.log")).read_text()
    line = next(x for x in log.splitlines() if "replayed" in x and " bars in " in x)
    return float(line.split(" bars in ")[1].split("s ")[0])


def _print(rows: list[Row], frame: BarFrame, args: argparse.Namespace) -> None:
    base = rows[-1]
    print(
        f"\nbenchmarks/run.py --symbols {args.symbols} --repeat {args.repeat}"
        f"{' --steps ' + str(args.steps) if args.steps else ''}"
        f"  ({frame.n_symbols} symbols x {frame.n_steps} steps, {platform.machine()},"
        f" {os.cpu_count()} cpus; medians of {args.repeat})\n"
    )
    header = f"{'entry':<42}{'seconds':>9}{'steps/s':>10}{'bars/s':>11}{'x baseline':>12}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = base.seconds / r.seconds
        print(
            f"{r.name:<42}{r.seconds:>9.2f}{r.steps_per_s:>10.1f}{r.bars_per_s:>11.0f}"
            f"{ratio:>12.3f}  {r.note}"
        )


if __name__ == "__main__":
    main()
