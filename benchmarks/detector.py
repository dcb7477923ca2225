"""Collapse-detector throughput and detection delay, on a real broker and faust worker.

Run with ``make bench`` (or ``.venv/bin/python -m benchmarks.detector``). It starts
its own Kafka on a free port, records ``--per-agent`` decisions of each of
``--agents`` agents (one of them collapsed from ``--collapse-at`` on) on the
ledger, one transaction per step as the portfolio manager writes them, starts
the worker and measures:

- throughput: actions (recorded decisions) per second in steady state, from
  the worker's count of processed actions (its ``/metrics``, polled): the
  slope between 10% and 90% of the actions, per second of wall time and per
  CPU second of the worker's process (on a machine shared with other work,
  the second is the steadier figure; the header gives the load average);
  and from the worker's start to
  its consumer groups having read the ledger and its re-keyed copy to the end
  (startup, group joins and table recovery included);
- detection delay: actions of the collapsed agent from its first collapsed
  action to its ``CollapseDetected``, and the seconds from the worker
  reading that first collapsed action to the alert on ``monitor.alerts``.

Baseline in the same run: the same actions folded through
``core.collapse.ActionWindow`` in one Python loop, no broker (the cost of the
statistics themselves). ``--worker-repo`` (repeatable) runs the worker of
another checkout (e.g. ``git archive`` of an older commit) on the same
decisions, each on a fresh broker, for a before/after comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.actions import classify
from core.collapse import KINDS, ActionWindow, CollapseThresholds, evaluate
from core.events import CollapseDetected, DecisionRecorded, event_id
from services.kafka import create_topics, read_run, start, transactional_producer
from services.monitoring import start_detector_at_end, start_group_at_end, wait_for_detector
from services.ports import free_ports
from streams.codec import CODEC
from streams.topics import MONITOR_ALERTS, PORTFOLIO_EVENTS

REPO = Path(__file__).resolve().parents[1]
KAFKA = REPO / "deploy" / "local" / "kafka" / "kafka.sh"
DAY = 86_400 * 1_000_000_000


def decisions(run_id: str, agents: int, per_agent: int, collapse_at: int) -> list[DecisionRecorded]:
    """Healthy random decisions; agent 0 answers 0.25 from ``collapse_at`` on."""
    rng = np.random.default_rng(0)
    out = []
    for step in range(per_agent):
        raw = rng.uniform(-1, 1, size=agents)
        if step >= collapse_at:
            raw[0] = 0.25
        kinds = classify(raw, 0.1)
        for j in range(agents):
            symbol = f"S{j:03d}"
            out.append(
                DecisionRecorded(
                    event_id=event_id(run_id, step, "decision", symbol),
                    cause_id=event_id(run_id, step, "action", symbol),
                    run_id=run_id,
                    event_time=1_250_000_000_000_000_000 + step * DAY // 24,
                    symbol=symbol,
                    step=step,
                    raw=float(raw[j]),
                    smoothed=float(raw[j]),
                    kind=KINDS[int(kinds[j])],
                    policy="bench",
                    policy_version="1",
                )
            )
    return out


def baseline(events: list[DecisionRecorded]) -> float:
    """Seconds to fold the actions through the statistics in plain Python."""
    began = time.perf_counter()
    windows: dict[str, ActionWindow] = {}
    limits = CollapseThresholds()
    for a in events:
        w = windows.setdefault(a.symbol, ActionWindow(1000, 365 * DAY))
        w.settle_through(a.step - 1)
        w.add(raw=a.raw, kind=KINDS.index(a.kind), step=a.step, event_time=a.event_time)
        evaluate(w.stats(), limits)
    return time.perf_counter() - began


async def publish(bootstrap: str, events: list[DecisionRecorded], agents: int) -> None:
    """Write the decisions on the ledger, one transaction per step."""
    client = transactional_producer(bootstrap, "bench", f"bench-{events[0].run_id}")
    await start(client, bootstrap)
    try:
        for i in range(0, len(events), agents):
            async with client.transaction():
                for d in events[i : i + agents]:
                    await client.send(PORTFOLIO_EVENTS.name, CODEC.encode(d), key=b"bench")
    finally:
        await client.stop()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    return free_ports(1)[0]


class ActionCounter(threading.Thread):
    """Poll the worker's count of processed actions and its CPU time: (seconds, count, cpu).

    Twice a second: rendering ``/metrics`` (a dozen series per agent) takes the
    worker's CPU too, so the poll should not be much busier than Prometheus.
    """

    _LINE = re.compile(rb"^tradingbot_detector_actions_total (\S+)$", re.MULTILINE)

    def __init__(self, port: int, pid: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.pid = pid
        self.every_s = every_s
        self.samples: list[tuple[float, float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    found = self._LINE.search(r.read())
                if found:
                    cpu = _cpu_seconds(self.pid)
                    self.samples.append((time.perf_counter(), float(found.group(1)), cpu))

    def steady(self, n: int) -> tuple[float, float, float]:
        """Between the samples at 10% and at 90% of ``n`` actions: seconds, actions/s and
        actions per CPU second of the worker."""
        lo = next(s for s in self.samples if s[1] >= 0.1 * n)
        hi = next(s for s in self.samples if s[1] >= 0.9 * n)
        actions = hi[1] - lo[1]
        return hi[0] - lo[0], actions / (hi[0] - lo[0]), actions / max(hi[2] - lo[2], 1e-9)


@contextlib.contextmanager
def _broker(port: int) -> Iterator[str]:
    """A fresh Kafka of the project's own scripts, warmed up (its group coordinator too)."""
    with tempfile.TemporaryDirectory(prefix="tb-bench-det-") as data_dir:
        env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA_DIR": data_dir}
        subprocess.run(["bash", str(KAFKA), "start"], env={**env, "KAFKA_FRESH": "1"},
                       check=True, capture_output=True)  # fmt: skip
        try:
            bootstrap = f"127.0.0.1:{port}"
            asyncio.run(create_topics(bootstrap))
            # The first consumer group creates __consumer_offsets: let that settle first.
            asyncio.run(start_group_at_end(bootstrap, "bench-warm-up", [PORTFOLIO_EVENTS.name]))
            time.sleep(5)
            yield bootstrap
        finally:
            subprocess.run(["bash", str(KAFKA), "stop"], env=env, capture_output=True)


@dataclass(frozen=True, slots=True)
class WorkerRun:
    """What one worker did with the ledger."""

    repo: Path
    total_s: float
    steady_s: float
    steady: float
    steady_cpu: float
    """Actions per CPU second of the worker in steady state."""
    cpu_s: float
    """CPU seconds of the worker process (all its threads), startup included."""
    samples: list[tuple[float, float, float]]
    delays: dict[str, int]
    false_alarms: list[str]


def run_worker(
    bootstrap: str, run_id: str, group: str, repo: Path, n: int, collapse_at: int, seen: int
) -> WorkerRun:
    """Run the worker of ``repo`` over the ledger until caught up; its alerts follow ``seen``."""
    port = _free_port()
    worker_env = {
        **os.environ,
        "TRADINGBOT_BOOTSTRAP": bootstrap,
        "TRADINGBOT_DETECTOR_APP_ID": group,
        "TRADINGBOT_DETECTOR_METRICS_PORT": str(port),
        # No portfolio manager runs here, so no order ever settles: no trade-frequency check.
        "TRADINGBOT_DETECTOR_TRADE_FREQUENCY": "0",
    }
    began = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.collapse_detector"], env=worker_env, cwd=repo,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    counter = ActionCounter(port, worker.pid)
    counter.start()
    try:
        asyncio.run(wait_for_detector(bootstrap, group, timeout_s=1800))
        total = time.perf_counter() - began
        time.sleep(3 * counter.every_s)  # the last count
        cpu_s = _cpu_seconds(worker.pid)
    finally:
        counter.done.set()
        counter.join()
        worker.terminate()
        worker.wait(timeout=60)
    alerts = asyncio.run(read_run(bootstrap, MONITOR_ALERTS.name, run_id))[seen:]
    detected = [a for a in alerts if isinstance(a, CollapseDetected)]
    # The alert's cause is the decision that tipped it: run/step/decision/agent.
    delays = {
        f"{a.metric}/{a.severity}": int(a.cause_id.split("/")[-3]) - collapse_at + 1
        for a in detected
        if a.agent == "S000"
    }
    steady_s, steady, steady_cpu = counter.steady(n)
    return WorkerRun(
        repo=repo,
        total_s=total,
        steady_s=steady_s,
        steady=steady,
        steady_cpu=steady_cpu,
        cpu_s=cpu_s,
        samples=[(t - began, c, cpu) for t, c, cpu in counter.samples],
        delays=delays,
        false_alarms=sorted({a.agent for a in detected if a.agent != "S000"}),
    )


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--per-agent", type=int, default=2000)
    parser.add_argument("--collapse-at", type=int, default=600)
    parser.add_argument("--port", type=int, default=39492)
    parser.add_argument("--bootstrap", default=None, help="use a running broker instead")
    parser.add_argument(
        "--worker-repo",
        type=Path,
        action="append",
        help="checkout whose worker runs (repeat to compare; default: this one)",
    )
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks" / "results" / "detector.json"
    )
    args = parser.parse_args()
    repos: list[Path] = args.worker_repo or [REPO]
    run_id = f"bench-detector-{int(time.time())}"
    events = decisions(run_id, args.agents, args.per_agent, args.collapse_at)
    n = len(events)
    runs: list[WorkerRun] = []
    load = os.getloadavg()[0]
    if args.bootstrap and len(repos) > 1:
        parser.error("--bootstrap runs one worker: workers on one broker share monitor.orders")
    for repo in repos:  # each on a fresh broker: a worker forwards onto monitor.orders
        with contextlib.ExitStack() as stack:
            bootstrap = args.bootstrap or stack.enter_context(_broker(args.port))
            group = f"collapse-detector-{run_id}"
            asyncio.run(create_topics(bootstrap))
            asyncio.run(start_detector_at_end(bootstrap, group))
            seen = len(asyncio.run(read_run(bootstrap, MONITOR_ALERTS.name, run_id)))
            asyncio.run(publish(bootstrap, events, args.agents))
            runs.append(run_worker(bootstrap, run_id, group, repo, n, args.collapse_at, seen))
    base = baseline(events)
    print(
        f"\nbenchmarks/detector.py --agents {args.agents} --per-agent {args.per_agent} "
        f"--collapse-at {args.collapse_at}  ({n} actions; {platform.machine()}, "
        f"{os.cpu_count()} cpus, load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)\n"
    )
    print(f"{'entry':<58}{'seconds':>9}{'actions/s':>12}{'x baseline':>12}")
    rows = []
    for run in runs:
        name = "this checkout" if run.repo == REPO else str(run.repo)
        rows.append((f"worker of {name}, steady state (10%..90%)", run.steady_s, run.steady))
        rows.append((f"worker of {name}, start to caught up", run.total_s, n / run.total_s))
        rows.append((f"worker of {name}, steady, per CPU second", run.steady_s, run.steady_cpu))
        rows.append((f"worker of {name}, all, per CPU second", run.cpu_s, n / run.cpu_s))
    rows.append(("core.collapse fold, no broker (baseline)", base, n / base))
    for name, seconds, rate in rows:
        print(f"{name:<58}{seconds:>9.2f}{rate:>12,.0f}{rate / (n / base):>12.3f}")
    print(
        f"\nagent S000 collapses at its action {args.collapse_at}; detection delay in its actions:"
    )
    metrics = sorted(
        {k for run in runs for k in run.delays}, key=lambda k: runs[0].delays.get(k, 0)
    )
    for key in metrics:
        print(f"  {key:<28}" + "".join(f"{run.delays.get(key, '-')!s:>8}" for run in runs))
    for run in runs:
        print(f"alerts on the {args.agents - 1} healthy agents: {run.false_alarms or 'none'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "actions": n,
                "baseline_actions_per_s": n / base,
                "workers": [
                    {
                        "worker": str(run.repo),
                        "start_to_caught_up_s": run.total_s,
                        "start_to_caught_up_actions_per_s": n / run.total_s,
                        "steady_actions_per_s": run.steady,
                        "steady_actions_per_cpu_s": run.steady_cpu,
                        "cpu_s": run.cpu_s,
                        "samples": run.samples,
                        "delay_actions": run.delays,
                        "false_alarms": run.false_alarms,
                    }
                    for run in runs
                ],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
