"""``tradingbot data synth``: write seeded synthetic bars (``core.synthetic``) to a file."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from core.bars import BarDataError, timestamp_ns_to_iso
from core.synthetic import INTERVALS, SynthConfig, synthesize
from rl_agents.bar_writer import SUFFIXES, write_bars


def add_parser(data_commands: Any) -> None:
    """Add ``synth`` to the ``data`` subcommands."""
    defaults = SynthConfig()
    synth = data_commands.add_parser(
        "synth",
        help="write seeded synthetic bars (regime-switching GBM with volume and gaps)",
        description="Generate bars for scale runs and tests and write them in the shared CSV "
        "layout (.csv, .csv.gz) or as Parquet; the same options and seed give the same file "
        "(docs/data.md, 'Synthetic bars').",
    )
    synth.add_argument("out", type=Path, help=f"the file to write ({', '.join(SUFFIXES)})")
    synth.add_argument("--symbols", type=int, default=defaults.symbols)
    synth.add_argument(
        "--bars", type=int, default=defaults.bars, help="timestamps (default: a month of minutes)"
    )
    synth.add_argument("--interval", choices=tuple(INTERVALS), default=defaults.interval)
    synth.add_argument("--seed", type=int, default=defaults.seed)
    synth.add_argument(
        "--start", type=date.fromisoformat, default=defaults.start, help="first day, YYYY-MM-DD"
    )
    synth.add_argument(
        "--no-gaps", action="store_true", help="every symbol has a bar at every timestamp"
    )


def run(args: argparse.Namespace) -> int:
    """Generate and write; print what was written. Bad settings: one line, exit code 2."""
    defaults = SynthConfig()
    try:
        config = SynthConfig(
            symbols=args.symbols,
            bars=args.bars,
            interval=args.interval,
            seed=args.seed,
            start=args.start,
            missing_probability=0.0 if args.no_gaps else defaults.missing_probability,
            halt_probability=0.0 if args.no_gaps else defaults.halt_probability,
        )
    except ValueError as e:
        print(f"tradingbot data synth: {e}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    frame = synthesize(config).frame
    try:
        write_bars(frame, args.out)
    except BarDataError as e:
        print(f"tradingbot data synth: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}: {int(frame.present.sum()):,} bars of {frame.n_symbols} symbols at "
        f"{frame.n_steps:,} timestamps ({config.interval}), "
        f"{timestamp_ns_to_iso(int(frame.timestamps[0]))} .. "
        f"{timestamp_ns_to_iso(int(frame.timestamps[-1]))}, seed {config.seed}, "
        f"{time.perf_counter() - began:.1f}s"
    )
    return 0
