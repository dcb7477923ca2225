"""Collapse-detector throughput and detection delay, on a real broker and faust worker.

Run with ``make bench`` (or ``.venv/bin/python -m benchmarks.detector``). It starts
its own Kafka on a free port, records ``--per-agent`` decisions of each of
``--agents`` agents (one of them collapsed from ``--collapse-at`` on) on the
ledger, one transaction per step as the portfolio manager writes them, starts
the worker and measures:

- throughput: actions (recorded decisions) per second from the worker's start
  to its consumer groups having read the ledger and its re-keyed copy to the
  end (startup included);
- detection delay: actions of the collapsed agent from its first collapsed
  action to its ``CollapseDetected``, and the seconds from the worker
  reading that first collapsed action to the alert on ``monitor.alerts``.

Baseline in the same run: the same actions folded through
``core.collapse.ActionWindow`` in one Python loop, no broker (the cost of the
statistics themselves).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.actions import classify
from core.collapse import KINDS, ActionWindow, CollapseThresholds, evaluate
from core.events import CollapseDetected, DecisionRecorded, event_id
from services.kafka import create_topics, read_run, start, transactional_producer
from services.monitoring import start_detector_at_end, start_group_at_end, wait_for_detector
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


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--per-agent", type=int, default=1000)
    parser.add_argument("--collapse-at", type=int, default=600)
    parser.add_argument("--port", type=int, default=39492)
    parser.add_argument("--bootstrap", default=None, help="use a running broker instead")
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks" / "results" / "detector.json"
    )
    args = parser.parse_args()
    run_id = f"bench-detector-{int(time.time())}"
    events = decisions(run_id, args.agents, args.per_agent, args.collapse_at)
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap or stack.enter_context(_broker(args.port))
        group = f"collapse-detector-{run_id}"
        asyncio.run(create_topics(bootstrap))
        asyncio.run(start_detector_at_end(bootstrap, group))
        asyncio.run(publish(bootstrap, events, args.agents))
        worker_env = {
            **os.environ,
            "TRADINGBOT_BOOTSTRAP": bootstrap,
            "TRADINGBOT_DETECTOR_APP_ID": group,
            "TRADINGBOT_DETECTOR_METRICS_PORT": "0",
            # No portfolio manager runs here, so no order ever settles: no trade-frequency check.
            "TRADINGBOT_DETECTOR_TRADE_FREQUENCY": "0",
        }
        began = time.perf_counter()
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.collapse_detector"], env=worker_env, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            asyncio.run(wait_for_detector(bootstrap, group, timeout_s=900))
            total = time.perf_counter() - began
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        alerts = asyncio.run(read_run(bootstrap, MONITOR_ALERTS.name, run_id))
    first = [a for a in alerts if isinstance(a, CollapseDetected) and a.agent == "S000"]
    # The alert's cause is the decision that tipped it: run/step/decision/agent.
    delays = {
        f"{a.metric}/{a.severity}": int(a.cause_id.split("/")[-3]) - args.collapse_at + 1
        for a in first
    }
    false_alarms = sorted(
        {a.agent for a in alerts if isinstance(a, CollapseDetected) and a.agent != "S000"}
    )
    base = baseline(events)
    n = len(events)
    rows = [
        ("faust worker, start to caught up", total, n / total),
        ("core.collapse fold, no broker (baseline)", base, n / base),
    ]
    print(
        f"\nbenchmarks/detector.py --agents {args.agents} --per-agent {args.per_agent} "
        f"--collapse-at {args.collapse_at}  ({n} actions; {platform.machine()}, "
        f"{os.cpu_count()} cpus)\n"
    )
    print(f"{'entry':<44}{'seconds':>9}{'actions/s':>12}{'x baseline':>12}")
    for name, seconds, rate in rows:
        print(f"{name:<44}{seconds:>9.2f}{rate:>12,.0f}{rate / (n / base):>12.3f}")
    print(
        f"\nagent S000 collapses at its action {args.collapse_at}; detection delay in its actions:"
    )
    for key, delay in sorted(delays.items(), key=lambda kv: kv[1]):
        print(f"  {key:<28}{delay:>6}")
    print(f"alerts on the {args.agents - 1} healthy agents: {false_alarms or 'none'}")
    print(f"seconds per action in the worker: {total / n * 1e3:.2f} ms")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "actions": n,
                "worker_seconds": total,
                "worker_actions_per_s": n / total,
                "baseline_actions_per_s": n / base,
                "delay_actions": delays,
                "false_alarms": false_alarms,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
