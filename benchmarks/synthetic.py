"""Synthetic bars at scale: generating, writing and reading back a month of minutes.

Run with ``.venv/bin/python -m benchmarks.synthetic`` (default: 143 symbols x
21 sessions x 390 minutes, about 1.2 million bars). Each entry runs in a
fresh process so its peak memory (``ru_maxrss``) is its own; the baseline in
the same run is the project's loader reading the generated ``.csv.gz`` back
(what every replay of the file pays), and the other entries are given as a
ratio of its bars per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _entry(step: str, out: Path, symbols: int, bars: int, seed: int) -> dict[str, float]:
    """Run one step in this process (the child of ``main``); return seconds, bars, peak MiB."""
    from core.synthetic import SynthConfig, synthesize
    from rl_agents.bar_writer import write_bars
    from rl_agents.data import load_bars

    config = SynthConfig(symbols=symbols, bars=bars, seed=seed)
    began = time.perf_counter()
    if step == "generate":
        frame = synthesize(config).frame
    elif step.startswith("write"):
        frame = synthesize(config).frame
        began = time.perf_counter()
        write_bars(frame, out)
    else:
        frame = load_bars(str(out))
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "bars": float(frame.present.sum()), "peak_mib": peak}


def _child(step: str, out: Path, args: argparse.Namespace) -> dict[str, float]:
    command = [
        sys.executable, "-m", "benchmarks.synthetic", "--child", step, "--out", str(out),
        "--symbols", str(args.symbols), "--bars", str(args.bars), "--seed", str(args.seed),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    """Run every entry in its own process and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=143)
    parser.add_argument("--bars", type=int, default=21 * 390)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks" / "results" / "synthetic.json"
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_entry(args.child, args.out, args.symbols, args.bars, args.seed)))
        return
    with tempfile.TemporaryDirectory(prefix="tb-bench-synth-") as tmp:
        csv, parquet = Path(tmp) / "month.csv.gz", Path(tmp) / "month.parquet"
        rows = {
            "generate (core.synthetic)": _child("generate", csv, args),
            "write .csv.gz (shared layout)": _child("write", csv, args),
            "write .parquet": _child("write", parquet, args),
            "read .parquet back (load_bars)": _child("read", parquet, args),
            "read .csv.gz back (load_bars, baseline)": _child("read", csv, args),
        }
        sizes = {"csv.gz": csv.stat().st_size, "parquet": parquet.stat().st_size}
    base = rows["read .csv.gz back (load_bars, baseline)"]
    base_rate = base["bars"] / base["seconds"]
    print(
        f"\nbenchmarks/synthetic.py --symbols {args.symbols} --bars {args.bars} "
        f"--seed {args.seed}  ({int(base['bars']):,} bars; {platform.machine()}, "
        f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f})\n"
    )
    print(f"{'entry':<42}{'seconds':>9}{'bars/s':>12}{'x baseline':>12}{'peak MiB':>10}")
    for name, r in rows.items():
        rate = r["bars"] / r["seconds"]
        print(
            f"{name:<42}{r['seconds']:>9.2f}{rate:>12,.0f}{rate / base_rate:>12.2f}"
            f"{r['peak_mib']:>10.0f}"
        )
    print(f"\nfile sizes: {', '.join(f'{k} {v / 2**20:.1f} MiB' for k, v in sizes.items())}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "sizes": sizes}, indent=2))


if __name__ == "__main__":
    main()
