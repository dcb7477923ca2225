"""The demo: real history through Kafka, the symbol agents and the portfolio manager.

It starts the local Kafka (unless given a broker), creates the topics, runs
the three services as separate processes, follows the replay on ``sim.clock``
with a progress bar, and prints a summary read back from the
``portfolio.events`` log. It stops every process it started, unless asked to
keep the stack running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
from tqdm import tqdm

from core.events import (
    DecisionRecorded,
    Event,
    PortfolioClosed,
    ReplayFinished,
    ReplayStarted,
    StepCompleted,
)
from core.gates import GateTable, gate_table
from core.report import Benchmark, RunSummary, buy_and_hold
from services import kafka
from services.db import local as local_db
from services.db.errors import DatabaseError
from services.fleet import FleetError
from services.fleet import choose as choose_fleet
from services.latency import RunLatency, run_latency
from services.market_replay.app import ReplayConfig, load_span
from services.monitoring import (
    AgentAlerts,
    MonitoringStack,
    read_alerts,
    start_detector_at_end,
    wait_for_detector,
)
from streams.codec import CODEC, CodecError
from streams.topics import PORTFOLIO_EVENTS, SIM_CLOCK

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "deploy" / "local" / "kafka" / "kafka.sh"
SERVICES = (
    ("market-replay", "services.market_replay"),
    ("symbol-agent", "services.symbol_agent"),
    ("portfolio-manager", "services.portfolio_manager"),
    ("collapse-detector", "streams.collapse_detector"),
)
PIPELINE = ("market-replay", "symbol-agent", "portfolio-manager")
"""The services that end with the run (the detector keeps watching)."""


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
    fleet: str = "sac"
    """``sac`` (the shipped fleet), ``momentum`` or ``mixed`` (services.fleet.FLEETS)."""
    monitoring: bool = True
    metrics_port: int = 9101
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    database: bool = True
    """Start the local TimescaleDB and the sink that projects the log into it."""
    db_port: int = 5433
    periods_per_year: int | None = None
    """Annualise Sharpe with this; None: derived from the bars' interval."""
    mode: str = "lockstep"
    """``lockstep`` or ``paced`` (services/market_replay)."""
    speed: str = "max"
    """A paced run's speed: ``max`` or a multiple of real time such as ``60x``."""
    agents: int = 1
    """Symbol-agent processes sharing the bars as one consumer group."""


SINK = "timescale-sink"
SINK_GROUP = "tradingbot-timescale-sink"
"""The demo's sink group: the local database keeps every demo's runs."""


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


def ensure_kafka(bootstrap: str | None, port: int) -> tuple[str, bool]:
    """The broker to use, and whether it was started here (stop it when done).

    A given ``bootstrap`` is used as it is. Otherwise the local Kafka on
    ``port``: a running one is reused; one started here starts empty.
    """
    if bootstrap is not None:
        return bootstrap, False
    was_running = kafka_script("status", port).returncode == 0
    started = kafka_script("start", port, fresh=not was_running)
    if started.returncode != 0:
        raise DemoError(f"Kafka did not start:\n{started.stdout}{started.stderr}")
    return f"127.0.0.1:{port}", not was_running


def check_ports(ports: dict[str, int]) -> None:
    """Refuse to start when a port the demo needs is taken, saying by what and how to fix it."""
    for name, port in ports.items():
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                continue
            except OSError:
                pass
        holder = _holder(port)
        raise DemoError(
            f"port {port} ({name}) is in use{holder}: a stack left by --keep-running? "
            "Stop it with `make stop`, or move the demo's ports with --metrics-port, "
            "--prometheus-port and --alertmanager-port"
        )


def _holder(port: int) -> str:
    """`` by pid N (command)`` for the process listening on ``port``, when it can be seen."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
                command = " ".join(psutil.Process(conn.pid).cmdline()[:4])
                return f" by pid {conn.pid} ({command})"
    return ""


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

    def wait(self, names: tuple[str, ...], timeout_s: float) -> None:
        """Wait for the named services to exit by themselves."""
        deadline = time.monotonic() + timeout_s
        for name in names:
            self.processes[name].wait(timeout=max(0.1, deadline - time.monotonic()))
        self.check()

    def write_pids(self, run_dir: Path) -> None:
        """Record the pids of the services still running (``make stop`` reads them)."""
        for name, process in self.processes.items():
            if process.poll() is None:
                (run_dir / f"{name}.pid").write_text(f"{process.pid}\n")

    def stop(self, except_names: tuple[str, ...] = ()) -> None:
        """Terminate what still runs (SIGTERM, then SIGKILL after 10 s)."""
        chosen = [p for n, p in self.processes.items() if n not in except_names]
        for process in reversed(chosen):
            if process.poll() is None:
                process.terminate()
        for process in chosen:
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
        await kafka.stop(client)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    """What the demo prints: the ledger's summary and what the monitoring saw."""

    summary: RunSummary
    benchmark: Benchmark
    """Buy-and-hold of the same symbols on the same days."""
    table: GateTable
    """Every agent's measures (the best and worst are printed)."""
    alerts: dict[str, AgentAlerts]
    policies: dict[str, str]
    firing: dict[str, int]
    received: int
    endpoints: dict[str, str]
    database: local_db.RunRows | None = None
    latency: RunLatency | None = None
    """A paced run's latencies and deadlines, measured from the logs."""
    fleet: str = ""
    """What the agents served, and why (services.fleet.choose)."""


def run_demo(options: DemoOptions) -> DemoResult:
    """Run the whole demo; return the summary read back from the logs."""
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
    try:
        fleet = choose_fleet(options.fleet, frame)
    except FleetError as e:
        raise DemoError(str(e)) from e
    print(f"fleet: {fleet.note}", file=sys.stderr)
    needed = {f"{name} /metrics": options.metrics_port + i for i, (name, _) in enumerate(SERVICES)}
    if options.monitoring:
        needed |= {
            "prometheus": options.prometheus_port,
            "alertmanager": options.alertmanager_port,
        }
    if options.database:
        needed[f"{SINK} /metrics"] = options.metrics_port + 5
    extra_agents = {
        f"symbol-agent-{i}": options.metrics_port + 9 + i for i in range(2, options.agents + 1)
    }
    needed |= {f"{name} /metrics": port for name, port in extra_agents.items()}
    check_ports(needed)
    bootstrap, started_kafka = ensure_kafka(options.bootstrap, options.kafka_port)
    run_id = new_run_id()
    run_dir = options.runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: options.metrics_port + i for i, (name, _) in enumerate(SERVICES)}
    database = local_db.LocalDatabase(options.db_port) if options.database else None
    if database is not None:
        ports[SINK] = options.metrics_port + 5  # after the trainer's 9105
    ports |= extra_agents  # 9111, 9112, ...
    detector_group = f"collapse-detector-{run_id}"
    monitoring = (
        MonitoringStack(
            prometheus_port=options.prometheus_port,
            alertmanager_port=options.alertmanager_port,
            data_dir=run_dir / "monitoring",
        )
        if options.monitoring
        else None
    )
    stack = Stack(run_dir)
    keep = False
    try:
        asyncio.run(kafka.create_topics(bootstrap))
        if monitoring is not None:
            monitoring.start(ports)
        env = {
            **os.environ,
            "TRADINGBOT_BOOTSTRAP": bootstrap,
            "TRADINGBOT_RUN_ID": run_id,
            "TRADINGBOT_REPLAY_DATASET": options.dataset,
            "TRADINGBOT_REPLAY_SYMBOLS": str(options.symbols),
            "TRADINGBOT_REPLAY_START": str(options.start),
            "TRADINGBOT_REPLAY_MIN_COVERAGE": str(options.min_coverage),
            "TRADINGBOT_REPLAY_METRICS_PORT": str(ports["market-replay"]),
            "TRADINGBOT_REPLAY_MODE": options.mode,
            "TRADINGBOT_REPLAY_SPEED": options.speed,
            "TRADINGBOT_AGENT_METRICS_PORT": str(ports["symbol-agent"]),
            "TRADINGBOT_AGENT_FLEET": fleet.fleet,
            "TRADINGBOT_AGENT_POLICY": fleet.policy,
            "TRADINGBOT_PORTFOLIO_METRICS_PORT": str(ports["portfolio-manager"]),
            "TRADINGBOT_DETECTOR_METRICS_PORT": str(ports["collapse-detector"]),
            "TRADINGBOT_DETECTOR_RUN_ID": run_id,
            "TRADINGBOT_DETECTOR_APP_ID": detector_group,
        }
        if options.steps is not None:
            env["TRADINGBOT_REPLAY_STEPS"] = str(options.steps)
        if options.periods_per_year is not None:
            env["TRADINGBOT_RULES_PERIODS_PER_YEAR"] = str(options.periods_per_year)
        # The run's detector watches from now on (not the broker's whole history).
        asyncio.run(start_detector_at_end(bootstrap, detector_group))
        if database is not None:
            try:
                env["TRADINGBOT_DB_URL"] = database.start()
            except DatabaseError as e:
                raise DemoError(str(e)) from e
            env["TRADINGBOT_SINK_GROUP_ID"] = SINK_GROUP
            env["TRADINGBOT_SINK_METRICS_PORT"] = str(ports[SINK])
            stack.spawn(SINK, "services.timescale_sink", env)
        for name, module in SERVICES:
            stack.spawn(name, module, env)
        for name, port in extra_agents.items():
            stack.spawn(
                name, "services.symbol_agent", {**env, "TRADINGBOT_AGENT_METRICS_PORT": str(port)}
            )
        print(f"run {run_id}: services started, logs in {run_dir}", file=sys.stderr)
        asyncio.run(follow(bootstrap, run_id, stack, options.progress, timeout_s=3600))
        stack.wait((*PIPELINE, *extra_agents), timeout_s=60)
        events = asyncio.run(
            kafka.read_run(bootstrap, PORTFOLIO_EVENTS.name, run_id, until=PortfolioClosed)
        )
        table = gate_table(events, options.periods_per_year)
        summary = table.summary
        benchmark = buy_and_hold(frame.close, summary.initial_equity, summary.annualisation)
        asyncio.run(wait_for_detector(bootstrap, detector_group))
        alerts = asyncio.run(read_alerts(bootstrap, run_id))
        firing: dict[str, int] = {}
        received = 0
        if monitoring is not None:
            critical = {
                agent
                for agent, a in alerts.items()
                if any(d.severity == "critical" for d in a.detected)
            }
            firing, received = _settle(monitoring, critical)
        projected = None
        if database is not None:
            try:
                asyncio.run(local_db.wait_for_sink(bootstrap, SINK_GROUP, stack.check))
                projected = local_db.run_rows(database.url, run_id)
            except DatabaseError as e:
                raise DemoError(str(e)) from e
        latency = asyncio.run(run_latency(bootstrap, run_id)) if options.mode == "paced" else None
        result = DemoResult(
            summary=summary,
            benchmark=benchmark,
            table=table,
            alerts=alerts,
            policies=_policies(events),
            firing=firing,
            received=received,
            endpoints=_endpoints(ports, monitoring),
            database=projected,
            fleet=fleet.note,
            latency=latency,
        )
        if options.json_path is not None:
            options.json_path.write_text(json.dumps(_as_json(result), indent=2, sort_keys=True))
        keep = options.keep_running
        return result
    finally:
        if keep:
            stack.stop(except_names=("collapse-detector", SINK))
            stack.write_pids(run_dir)
            print(
                "The collapse detector, Prometheus, Alertmanager, Kafka (and the TimescaleDB "
                "sink and database) keep running; stop them with `make stop`.",
                file=sys.stderr,
            )
        else:
            stack.stop()
            if monitoring is not None:
                monitoring.stop()
            if database is not None:
                database.stop()
            if started_kafka:
                kafka_script("stop", options.kafka_port)


def _settle(monitoring: MonitoringStack, critical: set[str]) -> tuple[dict[str, int], int]:
    """Give Prometheus and Alertmanager time to see the alerts; return what they hold.

    Waits (up to a minute) until every agent with a critical collapse on
    monitor.alerts also fires in Prometheus and has reached Alertmanager.
    """
    deadline = time.monotonic() + (60.0 if critical else 5.0)
    firing: dict[str, int] = {}
    received = 0
    while time.monotonic() < deadline:
        alerts = monitoring.firing()
        firing = dict(Counter(a["labels"]["alertname"] for a in alerts))
        at_manager = monitoring.received()
        received = len(at_manager)
        paged = {
            a["labels"].get("agent")
            for a in at_manager
            if a["labels"].get("alertname") == "ActionCollapseCritical"
        }
        if critical and critical <= paged:
            break
        time.sleep(1.0)
    return firing, received


def _policies(events: list[Event]) -> dict[str, str]:
    return {e.symbol: e.policy for e in events if isinstance(e, DecisionRecorded)}


def _endpoints(ports: dict[str, int], monitoring: MonitoringStack | None) -> dict[str, str]:
    urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
    if monitoring is not None:
        urls["prometheus alerts"] = f"{monitoring.prometheus_url}/alerts"
        urls["alertmanager"] = monitoring.alertmanager_url
    return urls


def _as_json(result: DemoResult) -> dict[str, object]:
    body = asdict(result.summary)
    body["buy_and_hold"] = {k: v for k, v in asdict(result.benchmark).items() if k != "equity"}
    body["agents"] = [asdict(a) for a in result.table.agents]
    body["alerts"] = {
        agent: [
            {
                "metric": a.metric,
                "severity": a.severity,
                "value": a.value,
                "threshold": a.threshold,
                "actions": a.actions,
            }
            for a in alerts.detected
        ]
        for agent, alerts in result.alerts.items()
    }
    body["policies"] = result.policies
    body["prometheus_firing"] = result.firing
    body["alertmanager_received"] = result.received
    body["database"] = asdict(result.database) if result.database is not None else None
    body["latency"] = asdict(result.latency) if result.latency is not None else None
    return body


def format_summary(
    s: RunSummary,
    *,
    benchmark: Benchmark | None = None,
    table: GateTable | None = None,
    agents: int = 5,
) -> str:
    """The summary as the text the demo prints: the fleet beside ``benchmark`` on the same
    days, and the ``agents`` best and worst agents of ``table`` by P&L."""
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
        f"  win rate            {s.win_rate:.1%} of {s.closed_trades} closing trades",
        "",
        f"{'':<20}{'fleet':>12}" + (f"{'buy-and-hold':>16}" if benchmark else ""),
    ]
    rows = (
        ("total return", f"{s.total_return:+.2%}", benchmark and f"{benchmark.total_return:+.2%}"),
        ("max drawdown", f"{s.max_drawdown:.2%}", benchmark and f"{benchmark.max_drawdown:.2%}"),
        ("Sharpe", f"{s.sharpe:.2f}", benchmark and f"{benchmark.sharpe:.2f}"),
    )
    for name, fleet, held in rows:
        lines.append(f"  {name:<18}{fleet:>12}" + (f"{held:>16}" if held else ""))
    lines.append(f"  Sharpe annualised with {s.annualisation.describe()}")
    if benchmark is not None:
        lines.append(f"  {benchmark.label}: the same symbols and days")
    if table is not None and table.agents:
        ranked = sorted(table.agents, key=lambda a: (-a.pnl, a.symbol))
        shown = ranked if len(ranked) <= 2 * agents else ranked[:agents] + ranked[-agents:]
        lines += [
            "",
            f"Agents by P&L ({'all' if len(shown) == len(ranked) else f'best and worst {agents}'}"
            f" of {len(ranked)}; every agent: `tradingbot report {s.run_id}`):",
            f"  {'agent':<8}{'P&L':>12}{'trades':>8}{'win rate':>10}{'Sharpe':>8}"
            f"{'dominant bin':>14}",
        ]
        for i, a in enumerate(shown):
            if i == agents and len(shown) < len(ranked):
                lines.append("  ...")
            lines.append(
                f"  {a.symbol:<8}{a.pnl:>+12,.2f}{a.trades:>8}{a.win_rate:>10.1%}"
                f"{a.sharpe:>8.2f}{a.dominant_bin:>14.0%}"
            )
    return "\n".join(lines)


def format_monitoring(result: DemoResult) -> str:
    """The alerts part of what the demo prints."""
    policies = Counter(result.policies.values())
    lines = []
    if result.latency is not None:
        lines += ["", "Paced run: latency from the logs (records' send times)"]
        lines += [f"  {line}" for line in result.latency.lines()]
    lines += [
        "",
        "Policies served: "
        + ", ".join(f"{name} x{n}" for name, n in sorted(policies.items()))
        + (f": {result.fleet}" if result.fleet else ""),
        f"Collapse alerts on monitor.alerts: {len(result.alerts)} agent(s)",
    ]
    quiet: list[str] = []  # agents whose only alert is a low trade frequency
    for agent, alerts in result.alerts.items():
        if {a.metric for a in alerts.detected} == {"trade_frequency"}:
            quiet.append(agent)
            continue
        detail = ", ".join(
            f"{a.metric} {a.value:.2f} vs {a.threshold:g} ({a.severity})" for a in alerts.detected
        )
        lines.append(
            f"  {agent:<6} [{result.policies.get(agent, '?')}] first after "
            f"{alerts.first_after_actions} actions: {detail}"
        )
    if quiet:
        lines.append(
            f"  low trade frequency only (< 5% of their orders filled) on {len(quiet)} agent(s): "
            + ", ".join(quiet)
        )
    if result.firing:
        firing = ", ".join(f"{name} x{n}" for name, n in sorted(result.firing.items()))
        lines.append(f"Prometheus alerts firing: {firing}")
        lines.append(f"Alertmanager received: {result.received} alert(s)")
    elif result.endpoints.get("prometheus alerts"):
        lines.append("Prometheus alerts firing: none")
    if result.database is not None:
        lines.extend(local_db.format_run_rows(result.database, result.summary.run_id))
    lines.append("Where to look (while the stack runs; --keep-running keeps it up):")
    lines.extend(f"  {name:<18} {url}" for name, url in result.endpoints.items())
    return "\n".join(lines)
