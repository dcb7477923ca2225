"""The demo: real history through Kafka, the symbol agents and the portfolio manager.

It starts the local Kafka (unless given a broker), creates the topics, runs
the three services as separate processes, follows the replay on ``sim.clock``
with a progress bar, and prints a summary read back from the
``portfolio.events`` log. It stops every process it started, unless asked to
keep the stack running.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from core.events import Event, PortfolioClosed, ReplayFinished, ReplayStarted, StepCompleted
from core.report import RunSummary, summarize
from services import kafka
from services.market_replay.app import ReplayConfig, load_span
from streams.codec import CODEC, CodecError
from streams.topics import PORTFOLIO_EVENTS, SIM_CLOCK

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "deploy" / "local" / "kafka" / "kafka.sh"
SERVICES = (
    ("portfolio-manager", "services.portfolio_manager"),
    ("symbol-agent", "services.symbol_agent"),
    ("market-replay", "services.market_replay"),
)


class DemoError(RuntimeError):
    """The demo could not run; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What the user asked for on the command line."""

    dataset: str
    symbols: int
    start: int
    steps: int | None
    min_coverage: float = 1.0
    bootstrap: str | None
    kafka_port: int
    keep_running: bool
    progress: bool
    json_path: Path | None
    runs_dir: Path


def new_run_id(prefix: str = "demo") -> str:
    """A fresh, sortable run id."""
    return f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def kafka_script(
    command: str, port: int, *, fresh: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``deploy/local/kafka/kafka.sh <command>`` for ``port``."""
    if not KAFKA_SCRIPT.is_file():
        raise DemoError(f"{KAFKA_SCRIPT} is missing: run the demo from a clone of the repository")
    env = {**os.environ, "KAFKA_PORT": str(port)}
    if fresh:
        env["KAFKA_FRESH"] = "1"
    return subprocess.run(
        ["bash", str(KAFKA_SCRIPT), command], env=env, text=True, capture_output=True, check=False
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stack:
    """The processes the demo started, stopped in reverse order."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, module: str, env: dict[str, str]) -> None:
        """Start ``python -m module`` with its output in ``<run dir>/<name>.log``."""
        log = (self.run_dir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )

    def check(self) -> None:
        """Raise if a service died with an error."""
        for name, process in self.processes.items():
            code = process.poll()
            if code not in (None, 0):
                raise DemoError(
                    f"{name} exited with code {code}; last lines of its log:\n"
                    + _tail(self.run_dir / f"{name}.log")
                )

    def wait(self, timeout_s: float) -> None:
        """Wait for every service to exit by itself."""
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        self.check()

    def stop(self) -> None:
        """Terminate what still runs (SIGTERM, then SIGKILL after 10 s)."""
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def follow(
    bootstrap: str, run_id: str, stack: Stack, progress: bool, timeout_s: float
) -> None:
    """Show the replay's progress from ``sim.clock`` until it finishes."""
    client = kafka.consumer(bootstrap, f"demo-{run_id}")
    await kafka.start(client, bootstrap)
    bar = tqdm(desc="replay", unit="step", disable=not progress, file=sys.stderr)
    try:
        await kafka.assign(client, [SIM_CLOCK.name], from_beginning=True)
        deadline = time.monotonic() + timeout_s
        while True:
            stack.check()
            if time.monotonic() > deadline:
                raise DemoError(f"the replay did not finish within {timeout_s:.0f}s")
            batches = await client.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        event = CODEC.decode(record.value)
                    except CodecError:
                        continue
                    if not isinstance(event, Event) or event.run_id != run_id:
                        continue
                    if isinstance(event, ReplayStarted):
                        bar.reset(total=event.steps_total)
                    elif isinstance(event, StepCompleted):
                        bar.update(1)
                    elif isinstance(event, ReplayFinished):
                        return
    finally:
        bar.close()
        await client.stop()


def run_demo(options: DemoOptions) -> RunSummary:
    """Run the whole demo and return the summary read back from the log."""
    # Check the data before starting anything, so a bad file fails fast and clearly.
    frame = load_span(
        ReplayConfig(
            dataset=options.dataset,
            symbols=options.symbols,
            start=options.start,
            steps=options.steps,
            min_coverage=options.min_coverage,
        )
    )
    print(
        f"data: {frame.n_symbols} symbols x {frame.n_steps} steps from {frame.source}"
        f" ({len(frame.repairs)} bars repaired, see docs/data.md)",
        file=sys.stderr,
    )
    managed = options.bootstrap is None
    bootstrap = options.bootstrap or f"127.0.0.1:{options.kafka_port}"
    started_kafka = False
    if managed:
        was_running = kafka_script("status", options.kafka_port).returncode == 0
        # A demo that starts its own broker starts it empty; a kept-running one is reused.
        result = kafka_script("start", options.kafka_port, fresh=not was_running)
        if result.returncode != 0:
            raise DemoError(f"Kafka did not start:\n{result.stdout}{result.stderr}")
        started_kafka = not was_running
    run_id = new_run_id()
    run_dir = options.runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(run_dir)
    try:
        asyncio.run(kafka.create_topics(bootstrap))
        env = {
            **os.environ,
            "TRADINGBOT_BOOTSTRAP": bootstrap,
            "TRADINGBOT_RUN_ID": run_id,
            "TRADINGBOT_REPLAY_DATASET": options.dataset,
            "TRADINGBOT_REPLAY_SYMBOLS": str(options.symbols),
            "TRADINGBOT_REPLAY_START": str(options.start),
            "TRADINGBOT_REPLAY_MIN_COVERAGE": str(options.min_coverage),
        }
        if options.steps is not None:
            env["TRADINGBOT_REPLAY_STEPS"] = str(options.steps)
        for name, module in SERVICES:
            stack.spawn(name, module, env)
        print(f"run {run_id}: services started, logs in {run_dir}", file=sys.stderr)
        asyncio.run(follow(bootstrap, run_id, stack, options.progress, timeout_s=3600))
        stack.wait(timeout_s=60)
        events = asyncio.run(
            kafka.read_run(bootstrap, PORTFOLIO_EVENTS.name, run_id, until=PortfolioClosed)
        )
        summary = summarize(events)
        if options.json_path is not None:
            options.json_path.write_text(json.dumps(asdict(summary), indent=2, sort_keys=True))
        return summary
    finally:
        stack.stop()
        if options.keep_running and managed:
            print(
                f"Kafka keeps running on {bootstrap}; stop it with `make stop` "
                f"(or KAFKA_PORT={options.kafka_port} {KAFKA_SCRIPT} stop)",
                file=sys.stderr,
            )
        elif started_kafka:
            kafka_script("stop", options.kafka_port)


def format_summary(s: RunSummary, columns: int = 4) -> str:
    """The summary as the text the demo prints."""
    skipped = ", ".join(f"{k} {v}" for k, v in s.skipped.items()) or "none"
    clipped = ", ".join(f"{k} {v}" for k, v in s.clipped.items()) or "none"
    lines = [
        f"Run {s.run_id} (read back from portfolio.events)",
        f"  steps replayed      {s.steps}",
        f"  bars replayed       {s.bars}",
        f"  symbols / agents    {s.symbols}",
        f"  actions             {s.actions}",
        f"  trades              {s.trades} ({s.buys} buys, {s.sells} sells)",
        f"  skipped orders      {skipped}",
        f"  clipped orders      {clipped}",
        f"  fees paid           ${s.fees:,.2f}",
        f"  initial equity      ${s.initial_equity:,.2f}",
        f"  final equity        ${s.final_equity:,.2f}",
        f"  total return        {s.total_return:+.2%}",
        f"  max drawdown        {s.max_drawdown:.2%}",
        f"  Sharpe (annual)     {s.sharpe:.2f}",
        f"  win rate            {s.win_rate:.1%} of {s.closed_trades} closing trades",
        "",
        "Action mix per agent (buy / sell / hold shares):",
    ]
    cells = []
    for symbol, mix in s.action_mix.items():
        b, se, h = mix.shares()
        cells.append(f"{symbol:<6}{b:>5.0%}{se:>5.0%}{h:>5.0%}")
    for i in range(0, len(cells), columns):
        lines.append("  " + "   ".join(cells[i : i + columns]))
    return "\n".join(lines)
