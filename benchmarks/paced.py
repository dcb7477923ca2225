"""Paced replay and scaled-out agents through the service processes, on synthetic minute bars.

Run with ``.venv/bin/python -m benchmarks.paced`` (``make bench`` runs it with
its defaults). It starts its own Kafka on a free port, writes seeded synthetic
minute bars (``tradingbot data synth --no-gaps``) for ``--symbols`` symbols,
and runs ``tradingbot demo`` (processes, no monitoring, no database) on them:

- ``lockstep`` over ``--steps`` minutes: the baseline of the table;
- ``paced max`` over the same minutes with 1 and with 3 symbol-agent processes
  (one consumer group): bars per second from the replay's first bar to the
  last step decided;
- ``paced 60x`` over ``--latency-steps`` minutes (one step a second) and, with
  ``--one-x-steps N``, ``paced 1x`` over N minutes (a minute a step): p50 and
  p99 of bar -> decision, measured from the records' send times;
- with ``--month``, a month of minute bars (about 8,200 per symbol) in paced
  max mode: wall time and each process's peak memory (from its log).

Every row's ratio is against the lockstep row of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from services.ports import free_ports

REPO = Path(__file__).resolve().parents[1]
KAFKA = REPO / "deploy" / "local" / "kafka" / "kafka.sh"
MONTH = 21 * 390
"""Minutes in a month of regular sessions (the generator's default span is close to it)."""


@dataclass
class Row:
    name: str
    steps: int
    bars: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    missed: int | None = None
    peak_mib: dict[str, float] | None = None

    @property
    def bars_per_s(self) -> float:
        return self.bars / self.seconds if self.seconds > 0 else 0.0


def start_kafka(data_dir: str) -> tuple[str, dict[str, str]]:
    """A Kafka of the benchmark's own on free ports; its bootstrap and script environment."""
    port, controller = free_ports(2)
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_DATA_DIR": data_dir,
        "KAFKA_FRESH": "1",
    }
    subprocess.run(["bash", str(KAFKA), "start"], env=env, check=True, capture_output=True)
    return f"127.0.0.1:{port}", env


def synth(path: Path, symbols: int, bars: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "services.cli", "data", "synth", "--symbols", str(symbols),
         "--bars", str(bars), "--interval", "1min", "--seed", "7", "--no-gaps", str(path)],
        check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip


def metrics_port() -> int:
    """A first /metrics port with the demo's 20 ports after it free (9101 may be taken)."""
    for base in range(29101, 40000, 50):
        taken = []
        try:
            for port in range(base, base + 20):
                s = socket.socket()
                taken.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in taken:
                s.close()
    raise SystemExit("no free range of 20 ports for the demo's /metrics")


def demo(
    bootstrap: str, data: Path, symbols: int, steps: int, *, mode: str, speed: str, agents: int
) -> Row:
    """One ``tradingbot demo`` run; the replay's own time and what the logs say."""
    with tempfile.TemporaryDirectory(prefix="tb-bench-paced-") as out:
        summary = Path(out) / "summary.json"
        command = [
            sys.executable, "-m", "services.cli", "demo", "--bootstrap", bootstrap,
            "--dataset", str(data), "--symbols", str(symbols), "--steps", str(steps),
            "--mode", mode, "--speed", speed, "--agents", str(agents), "--fleet", "momentum",
            "--no-progress", "--no-monitoring", "--no-database", "--runs-dir", out,
            "--metrics-port", str(metrics_port()), "--json", str(summary),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise SystemExit(f"demo failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
        run_dir = next(p for p in Path(out).iterdir() if p.is_dir())
        log = (run_dir / "market-replay.log").read_text()
        line = next(x for x in log.splitlines() if "replayed" in x and " bars in " in x)
        match = re.search(r"replayed (\d+) steps, (\d+) bars in ([0-9.]+)s", line)
        assert match is not None, line
        peaks: dict[str, float] = {}
        for path in run_dir.glob("*.log"):
            found = re.findall(r"peak memory (\d+) MiB", path.read_text(errors="replace"))
            if found:
                peaks[path.stem] = float(found[-1])
        body = json.loads(summary.read_text())
        latency = body.get("latency") or {}
        paths = {p["path"]: p for p in latency.get("paths", [])}
        decision = paths.get("bar -> decision")
        label = f"{mode} {speed if mode == 'paced' else ''}".strip()
        return Row(
            name=f"{label}, {agents} agent{'s' if agents > 1 else ''}",
            steps=int(match.group(1)),
            bars=int(match.group(2)),
            seconds=float(match.group(3)),
            p50_ms=decision["p50_ms"] if decision else None,
            p99_ms=decision["p99_ms"] if decision else None,
            missed=latency.get("missed"),
            peak_mib=peaks,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=143)
    parser.add_argument("--steps", type=int, default=390, help="minutes of the max-speed rows")
    parser.add_argument("--latency-steps", type=int, default=30, help="minutes at 60x")
    parser.add_argument("--one-x-steps", type=int, default=0, help="minutes at 1x (0: skip)")
    parser.add_argument("--month", action="store_true", help="also a month of minutes at max")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "paced.json")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-paced-kafka-") as data_dir:
        bootstrap, env = start_kafka(data_dir)
        try:
            data = Path(data_dir) / "minutes.parquet"
            began = time.perf_counter()
            synth(data, args.symbols, MONTH if args.month else max(args.steps, args.latency_steps))
            print(f"synthetic minute bars written in {time.perf_counter() - began:.1f}s")
            run = lambda steps, mode, speed, agents: demo(  # noqa: E731
                bootstrap, data, args.symbols, steps, mode=mode, speed=speed, agents=agents
            )
            rows.append(run(args.steps, "lockstep", "max", 1))
            rows.append(run(args.steps, "paced", "max", 1))
            rows.append(run(args.steps, "paced", "max", 3))
            rows.append(run(args.latency_steps, "paced", "60x", 1))
            if args.one_x_steps:
                rows.append(run(args.one_x_steps, "paced", "1x", 1))
            if args.month:
                month = run(MONTH, "paced", "max", 3)
                month.name = f"a month of minutes ({MONTH} steps), paced max, 3 agents"
                rows.append(month)
        finally:
            subprocess.run(["bash", str(KAFKA), "stop"], env=env, capture_output=True)
    base = rows[0]
    print(
        f"\nbenchmarks/paced.py --symbols {args.symbols} --steps {args.steps}"
        f"  ({platform.machine()}, {os.cpu_count()} cpus; synthetic 1-minute bars, seed 7)\n"
    )
    header = (
        f"{'entry':<48}{'steps':>7}{'bars':>10}{'seconds':>9}{'bars/s':>9}{'x lockstep':>11}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'missed':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = r.bars_per_s / base.bars_per_s if base.bars_per_s else 0.0
        p50 = f"{r.p50_ms:.0f}" if r.p50_ms is not None else "-"
        p99 = f"{r.p99_ms:.0f}" if r.p99_ms is not None else "-"
        missed = str(r.missed) if r.missed is not None else "-"
        print(
            f"{r.name:<48}{r.steps:>7}{r.bars:>10}{r.seconds:>9.2f}{r.bars_per_s:>9.0f}"
            f"{ratio:>11.2f}{p50:>8}{p99:>8}{missed:>8}"
        )
    for r in rows:
        if r.peak_mib:
            peaks = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.peak_mib.items()))
            print(f"peak MiB, {r.name}: {peaks}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))


if __name__ == "__main__":
    main()
