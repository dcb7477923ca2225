"""``tradingbot evaluate``: the gate table of trained and reference fleets on held-out days.

Every contender (the trained SAC fleet, the discrete PPO baseline, buy-and-hold
and a random policy) is replayed over the same held-out days through the
lockstep streaming pipeline on a real broker: market replay, symbol agent and
portfolio manager, the code of ``tradingbot demo`` in one event loop. Each
run's ``portfolio.events`` are read back from the broker and folded into the
gate table (``core.gates``). The hard gates are checked on the SAC fleet only.

The held-out days are the test span of ``rl_agents.data.chronological_split``
over the universe that training used; a checkpoint whose training data reaches
into them is refused (no look-ahead, never tune on the test days).
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.bars import BarFrame
from core.events import PortfolioClosed
from core.gates import GateLimits, GateResult, GateTable, check_gates, gate_table, percentiles
from rl_agents.data import BYTETHEORY, DEFAULT_UNIVERSE, chronological_split, load_bars, universe
from rl_agents.policies import Policy, make_policy
from services import kafka
from services.demo import REPO, ensure_kafka, kafka_script, new_run_id
from services.pipeline import run_lockstep
from services.symbol_agent.app import AgentConfig
from streams.topics import PORTFOLIO_EVENTS

WINDOW = 10
"""Bars of features in an observation (the agents' and the environments' default)."""


class EvaluationError(RuntimeError):
    """The evaluation cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationOptions:
    """What the user asked for on the command line."""

    sac: Path | None
    """A SAC checkpoint (``tradingbot train``); the hard gates are checked on it."""
    ppo: Path | None = None
    """A discrete PPO baseline (``python -m rl_agents.baselines.ppo``)."""
    dataset: str = BYTETHEORY
    symbols: int = DEFAULT_UNIVERSE
    span: str = "test"
    """Which chronological span to replay: ``test`` (held out) or ``validation``."""
    days: tuple[int, int] | None = None
    """The slice of the data training was given (``tradingbot train --days``); all when None."""
    seed: int = 0
    """Seed of the random policy."""
    bootstrap: str | None = None
    kafka_port: int = 9092
    runs_dir: Path = REPO / "runs"
    json_path: Path | None = None
    limits: GateLimits = field(default_factory=GateLimits)


@dataclass(frozen=True, slots=True)
class Contender:
    """One fleet to replay: a label and the policy every symbol's agent serves."""

    label: str
    policy: Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationResult:
    """The gate tables of every contender, and the SAC fleet's hard gates."""

    span: tuple[int, int]
    symbols: tuple[str, ...]
    first_day: str
    last_day: str
    tables: dict[str, GateTable]
    gates: list[GateResult]
    out_dir: Path

    @property
    def passed(self) -> bool:
        """Whether every hard gate passed (True when no SAC fleet was evaluated)."""
        return all(g.passed for g in self.gates)


def held_out_frame(
    dataset: str, symbols: int, span: str, days: tuple[int, int] | None = None
) -> tuple[BarFrame, tuple[int, int]]:
    """The universe of the whole data (as training chose it) cut to one chronological span.

    ``days`` (``[start, stop)`` of the data's timestamps) is the slice training
    was given (``tradingbot train --days``): the span is cut from it the same way.
    """
    if span not in ("test", "validation"):
        raise EvaluationError(f"span must be 'test' or 'validation', got {span!r}")
    start, steps = (0, None) if days is None else (days[0], days[1] - days[0])
    full = universe(load_bars(dataset), symbols, start=start, steps=steps)
    bounds = chronological_split(full.n_steps)[span]
    return full.window(*bounds), bounds


def sac_contender(path: Path, frame: BarFrame) -> Contender:
    """The SAC checkpoint as a contender, refused if it does not fit the frame's days or symbols."""
    from rl_agents.checkpoints import CheckpointError, load_checkpoint

    if not path.is_file():
        raise EvaluationError(f"{path}: no such checkpoint (train one with `tradingbot train`)")
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as e:
        raise EvaluationError(f"{path}: {e}") from e
    span = checkpoint.data_span
    last = span.get("last_timestamp_ns")
    if last is not None and int(last) >= int(frame.timestamps[0]):
        raise EvaluationError(
            f"{path} was trained on data up to {_day(int(last))}, which reaches into the "
            f"evaluated days ({_day(int(frame.timestamps[0]))} on): evaluate on held-out days"
        )
    n_agents = checkpoint.architecture.get("n_agents")
    if n_agents is not None and list(span.get("symbols", ())) != list(frame.symbols):
        raise EvaluationError(
            f"{path} is a fleet of {n_agents} heads trained on other symbols than the "
            f"{frame.n_symbols} evaluated ones: train it with the same --symbols"
        )
    try:
        policy = make_policy(f"sac:{path}", window=WINDOW)
    except CheckpointError as e:  # trained for other observations than the agents serve
        raise EvaluationError(f"{path}: {e}") from e
    return Contender(f"SAC fleet ({path.name})", policy)


def contenders(options: EvaluationOptions, frame: BarFrame) -> list[Contender]:
    """The fleets to compare, the SAC fleet first."""
    from rl_agents.baselines.reference import BuyAndHoldPolicy, RandomPolicy

    found: list[Contender] = []
    if options.sac is not None:
        found.append(sac_contender(options.sac, frame))
    if options.ppo is not None:
        if not options.ppo.is_file():
            raise EvaluationError(
                f"{options.ppo}: no such PPO baseline (python -m rl_agents.baselines.ppo)"
            )
        found.append(
            Contender(
                f"discrete PPO ({options.ppo.name})",
                make_policy(f"ppo:{options.ppo}", window=WINDOW),
            )
        )
    found.append(Contender("buy-and-hold", BuyAndHoldPolicy()))
    found.append(Contender(f"random (seed {options.seed})", RandomPolicy(options.seed)))
    return found


async def replay(bootstrap: str, frame: BarFrame, contender: Contender, run_id: str) -> GateTable:
    """One contender through the lockstep pipeline; its gate table from the broker's log."""
    # A model id of its own, so no model published on the broker replaces the policy.
    agent = AgentConfig(policy="momentum", window=WINDOW, model_id=f"evaluate-{run_id}")
    await run_lockstep(
        bootstrap=bootstrap, run_id=run_id, frame=frame, agent=agent, policy=contender.policy
    )
    events = await kafka.read_run(
        bootstrap, PORTFOLIO_EVENTS.name, run_id, until=PortfolioClosed, timeout_s=120.0
    )
    return gate_table(events)


def run_evaluation(options: EvaluationOptions) -> EvaluationResult:
    """Replay every contender on the held-out days; return their gate tables."""
    frame, bounds = held_out_frame(options.dataset, options.symbols, options.span, options.days)
    fleet = contenders(options, frame)
    bootstrap, started_kafka = ensure_kafka(options.bootstrap, options.kafka_port)
    stamp = new_run_id("evaluate")
    out_dir = options.runs_dir / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, GateTable] = {}
    # A new broker answers the first offset fetches with NotLeader while it elects; the
    # consumers retry, and aiokafka logs each retry as an error. Keep that out of the table.
    logging.getLogger("aiokafka.consumer.fetcher").setLevel(logging.CRITICAL)
    try:
        asyncio.run(kafka.create_topics(bootstrap))
        for i, contender in enumerate(fleet):
            print(
                f"replaying {contender.label} over {frame.n_steps} held-out days "
                f"x {frame.n_symbols} symbols",
                file=sys.stderr,
            )
            tables[contender.label] = asyncio.run(
                replay(bootstrap, frame, contender, f"{stamp}-{i}")
            )
    finally:
        if started_kafka:
            kafka_script("stop", options.kafka_port)
    gates = check_gates(tables[fleet[0].label], options.limits) if options.sac is not None else []
    result = EvaluationResult(
        span=bounds,
        symbols=frame.symbols,
        first_day=_day(int(frame.timestamps[0])),
        last_day=_day(int(frame.timestamps[-1])),
        tables=tables,
        gates=gates,
        out_dir=out_dir,
    )
    write_agents_csv(result, out_dir / "agents.csv")
    document = as_json(result)
    (out_dir / "evaluation.json").write_text(json.dumps(document, indent=2))
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(document, indent=2))
    return result


def _day(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d")


# -------------------------------------------------------------------- output

FLEET_ROWS: tuple[tuple[str, str, str], ...] = (
    ("total return", "total_return", "pct"),
    ("Sharpe (annual)", "sharpe", "num"),
    ("max drawdown", "max_drawdown", "pct"),
    ("win rate", "win_rate", "pct"),
    ("trades per day", "trades_per_day", "num"),
    ("action diversity (mean)", "diversity", "num"),
    ("action diversity (min agent)", "min_diversity", "num"),
    ("dominant-bin share (max agent)", "dominant_bin", "pct"),
    ("trade frequency", "trade_frequency", "pct"),
)
AGENT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("agent Sharpe", "sharpe", "num"),
    ("agent max drawdown", "max_drawdown", "pct"),
    ("agent win rate", "win_rate", "pct"),
    ("agent trades per day", "trades_per_day", "num"),
    ("agent diversity", "diversity", "num"),
    ("agent dominant-bin share", "dominant_bin", "pct"),
    ("agent trade frequency", "trade_frequency", "pct"),
)


def _fmt(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.1%}" if kind == "pct" else f"{value:.2f}"


def format_tables(result: EvaluationResult) -> str:
    """The fleet table, the per-agent spread (min / median / max) and the hard gates."""
    labels = list(result.tables)
    tables = list(result.tables.values())
    rows: list[tuple[str, list[str]]] = [("Fleet", labels)]
    for name, attr, kind in FLEET_ROWS:
        rows.append((name, [_fmt(getattr(t.fleet, attr), kind) for t in tables]))
    rows.append(
        ("profitable agents", [f"{t.fleet.profitable_agents} / {t.fleet.agents}" for t in tables])
    )
    rows.append(("", ["" for _ in tables]))
    rows.append(("Per agent: min / median / max", ["" for _ in tables]))
    for name, attr, kind in AGENT_ROWS:
        cells = [" / ".join(_fmt(v, kind) for v in percentiles(t.agents, attr)) for t in tables]
        rows.append((name, cells))
    first = max(len(name) for name, _ in rows) + 2
    widths = [max(len(cells[i]) for _, cells in rows) + 3 for i in range(len(tables))]
    lines = [
        f"Held-out {result.first_day} .. {result.last_day}: {tables[0].steps} days x "
        f"{len(result.symbols)} symbols, each fleet through the streaming pipeline",
        f"Sharpe annualised with {tables[0].summary.annualisation.describe()}",
        "",
    ]
    for name, cells in rows:
        line = name.ljust(first) + "".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        lines.append(line.rstrip())
    if result.gates:
        lines += ["", f"Hard gates of {labels[0]}:"]
        for gate in result.gates:
            verdict = "PASS" if gate.passed else "FAIL"
            lines.append(f"  {verdict}  {gate.gate}: {gate.value:.3f} ({gate.limit})")
    lines += ["", f"Every agent's row: {result.out_dir / 'agents.csv'}"]
    return "\n".join(lines)


def write_agents_csv(result: EvaluationResult, path: Path) -> None:
    """One row per contender and agent, every measure of the gate table."""
    columns: Sequence[str] = (
        "symbol", "pnl", "sharpe", "max_drawdown", "win_rate", "closed_trades", "trades",
        "trades_per_day", "actions", "diversity", "dominant_bin", "trade_frequency",
    )  # fmt: skip
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["contender", *columns, "profitable"])
        for label, table in result.tables.items():
            for agent in table.agents:
                row = asdict(agent)
                writer.writerow([label, *(row[c] for c in columns), agent.profitable])


def as_json(result: EvaluationResult) -> dict[str, Any]:
    """The result as plain JSON values."""
    return {
        "span": list(result.span),
        "first_day": result.first_day,
        "last_day": result.last_day,
        "symbols": list(result.symbols),
        "passed": result.passed,
        "gates": [asdict(g) for g in result.gates],
        "contenders": {
            label: {
                "run_id": table.run_id,
                "steps": table.steps,
                "fleet": asdict(table.fleet),
                "agents": [{**asdict(a), "profitable": a.profitable} for a in table.agents],
            }
            for label, table in result.tables.items()
        },
    }
