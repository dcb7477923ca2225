"""Recovery time of the portfolio manager after ``kill -9``, against the length of its log.

For each kill step k, a run of the demo's data (143 symbols x 245 days by
default) goes through the three service processes on a broker of its own;
when step k is complete the portfolio manager is killed with SIGKILL and
started again. The table gives, from the restart:

- ``ready``: the manager has folded its ledger and resumed its inputs (its
  second ``ServiceReady`` on sim.clock);
- ``next step``: the run has completed the next step;

and the baseline of the same machine in the same invocation: a process
that only imports the manager (Python and its libraries starting), so the
ratio shows what the log adds. ``python -m benchmarks.recovery [--symbols N]
[--kill-at 60,120,240]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.events import Event, ServiceReady, StepCompleted
from services import kafka
from streams.topics import PORTFOLIO_EVENTS, SIM_CLOCK

REPO = Path(__file__).resolve().parents[1]
KAFKA = REPO / "deploy" / "local" / "kafka" / "kafka.sh"
SERVICES = ("services.portfolio_manager", "services.symbol_agent", "services.market_replay")


def _clock(bootstrap: str, run_id: str) -> list[Event]:
    return asyncio.run(kafka.read_run(bootstrap, SIM_CLOCK.name, run_id, timeout_s=30))


def _wait(bootstrap: str, run_id: str, done: object, timeout_s: float = 600) -> float:
    """Poll the run's clock until ``done(events)``; return the time it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done(_clock(bootstrap, run_id)):  # type: ignore[operator]
            return time.perf_counter()
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} did not get there within {timeout_s:.0f}s")


def _completed(step: int) -> object:
    return lambda events: any(isinstance(e, StepCompleted) and e.step >= step for e in events)


def _readies(count: int) -> object:
    return lambda events: (
        sum(isinstance(e, ServiceReady) and e.service == "portfolio-manager" for e in events)
        >= count
    )


def trial(bootstrap: str, run_id: str, symbols: int, kill_at: int, logs: Path) -> dict[str, float]:
    """One run killed after step ``kill_at``; return the recovery times in seconds."""
    env = {
        **os.environ,
        "TRADINGBOT_BOOTSTRAP": bootstrap,
        "TRADINGBOT_RUN_ID": run_id,
        "TRADINGBOT_REPLAY_SYMBOLS": str(symbols),
        "TRADINGBOT_REPLAY_METRICS_PORT": "0",
        "TRADINGBOT_AGENT_METRICS_PORT": "0",
        "TRADINGBOT_PORTFOLIO_METRICS_PORT": "0",
        "TRADINGBOT_LOG_LEVEL": "WARNING",
    }

    def spawn(module: str) -> subprocess.Popen[bytes]:
        log = (logs / f"{run_id}-{module}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", module], env=env, cwd=REPO, stdout=log, stderr=log
        )

    processes = {m: spawn(m) for m in SERVICES}
    try:
        _wait(bootstrap, run_id, _completed(kill_at))
        manager = processes[SERVICES[0]]
        manager.send_signal(signal.SIGKILL)
        manager.wait()
        ledger = asyncio.run(kafka.read_run(bootstrap, PORTFOLIO_EVENTS.name, run_id))
        began = time.perf_counter()
        processes[SERVICES[0]] = spawn(SERVICES[0])
        ready = _wait(bootstrap, run_id, _readies(2))
        step = _wait(bootstrap, run_id, _completed(kill_at + 1))
        for process in processes.values():
            process.wait(timeout=600)
        return {"ready": ready - began, "step": step - began, "events": float(len(ledger))}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()


def import_only() -> float:
    """Seconds for a process that only imports the portfolio manager."""
    began = time.perf_counter()
    code = "import services.portfolio_manager.app"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    return time.perf_counter() - began


def main() -> None:
    """Run the trials and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=143)
    parser.add_argument("--kill-at", default="30,120,240", help="steps after which to kill")
    parser.add_argument("--port", type=int, default=39492)
    args = parser.parse_args()
    kills = [int(k) for k in args.kill_at.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tb-recovery-") as tmp:
        env = {**os.environ, "KAFKA_PORT": str(args.port), "KAFKA_DATA_DIR": tmp + "/kafka"}
        env |= {"KAFKA_CONTROLLER_PORT": str(args.port + 1), "KAFKA_FRESH": "1"}
        subprocess.run(["bash", str(KAFKA), "start"], env=env, check=True, capture_output=True)
        bootstrap = f"127.0.0.1:{args.port}"
        try:
            asyncio.run(kafka.create_topics(bootstrap))
            base = statistics.median(import_only() for _ in range(3))
            for i, k in enumerate(kills):
                rows.append((k, trial(bootstrap, f"recovery-{i}-{k}", args.symbols, k, Path(tmp))))
        finally:
            subprocess.run(["bash", str(KAFKA), "stop"], env=env, capture_output=True)
    print(
        f"\nbenchmarks/recovery.py --symbols {args.symbols}  ({platform.machine()},"
        f" {os.cpu_count()} cpus); baseline: a process importing the manager, {base:.2f}s\n"
    )
    header = (
        f"{'killed after step':>18}{'ledger events at kill':>23}{'ready s':>10}"
        f"{'next step s':>13}{'ready / baseline':>18}"
    )
    print(header)
    print("-" * len(header))
    for k, r in rows:
        print(
            f"{k:>18}{int(r['events']):>23}{r['ready']:>10.2f}{r['step']:>13.2f}"
            f"{r['ready'] / base:>18.2f}"
        )


if __name__ == "__main__":
    main()
