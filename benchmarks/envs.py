"""Environment speed, side by side with the environments users have today.

Run with ``make bench`` (or ``.venv/bin/python -m benchmarks.envs`` once the
``bench`` extra and FinRL are installed). Every entry draws its actions
before the clock and steps for ``--seconds``; the entries run in interleaved
rounds and the table shows each entry's median, so the ratios compare runs
made in the same minutes on this noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import rl_agents  # noqa: F401 - registers the environments
from benchmarks.competitors import (
    Measurement,
    finrl,
    gym_anytrading,
    iso_dates,
    numpy_floor,
    time_episodic,
)
from rl_agents.data import load_bars, universe

REPO = Path(__file__).resolve().parents[1]


def ours(env_id: str, seconds: float, seed: int = 0) -> list[Measurement]:
    """One of our registered environments, as gym.make returns it and unwrapped."""
    env: gym.Env[Any, Any] = gym.make(env_id)
    shape = env.action_space.shape or (1,)
    n = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    actions = list(rng.uniform(-1.0, 1.0, size=(4096, *shape)).astype(np.float32))
    name = env_id.split("/")[1]
    try:
        return [
            time_episodic(f"{name} (gym.make)", env, actions, seconds, seed, n),
            time_episodic(f"{name} (unwrapped)", env.unwrapped, actions, seconds, seed, n),
        ]
    finally:
        env.close()


def main() -> None:
    """Measure, print the table and the ratios, write benchmarks/results/envs.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per entry and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "envs.json")
    args = parser.parse_args()

    frame = universe(load_bars("bytetheory"), 143)
    dates = iso_dates(frame.timestamps)
    entries: list[Callable[[], list[Measurement]]] = [
        lambda: ours("tradingbot/ContinuousTrading-v0", args.seconds),
        lambda: ours("tradingbot/PortfolioTrading-v0", args.seconds),
        lambda: gym_anytrading(args.seconds),
        lambda: [
            finrl(
                frame.close,
                frame.open,
                frame.high,
                frame.low,
                frame.volume,
                list(frame.symbols),
                dates,
                seconds=args.seconds,
            )
        ],  # fmt: skip
        lambda: [numpy_floor(frame.open, frame.close, seconds=args.seconds)],
    ]
    runs: dict[str, list[Measurement]] = {}
    for _ in range(args.rounds):
        for entry in entries:
            for m in entry():
                runs.setdefault(m.name, []).append(m)
    median = {name: statistics.median(m.steps_per_s for m in ms) for name, ms in runs.items()}
    symbols = {name: ms[0].symbols for name, ms in runs.items()}

    print(
        f"\nbenchmarks/envs.py --seconds {args.seconds} --rounds {args.rounds}"
        f"  ({platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()};"
        f" medians of {args.rounds} interleaved rounds)\n"
    )
    header = f"{'environment':<46}{'symbols':>8}{'steps/s':>12}{'symbol-steps/s':>16}"
    print(header)
    print("-" * len(header))
    for name, value in median.items():
        print(f"{name:<46}{symbols[name]:>8}{value:>12,.0f}{value * symbols[name]:>16,.0f}")

    def ratio(a: str, b: str) -> float:
        return median[a] * symbols[a] / (median[b] * symbols[b])

    floor = next(n for n in median if n.startswith("numpy floor"))
    fin = next(n for n in median if n.startswith("FinRL"))
    ratios = {
        "PortfolioTrading (unwrapped) / numpy floor": ratio(
            "PortfolioTrading-v0 (unwrapped)", floor
        ),
        "PortfolioTrading (gym.make) / numpy floor": ratio("PortfolioTrading-v0 (gym.make)", floor),
        "PortfolioTrading (gym.make) / FinRL": ratio("PortfolioTrading-v0 (gym.make)", fin),
        "ContinuousTrading / gym-anytrading (gym.make)": ratio(
            "ContinuousTrading-v0 (gym.make)", "gym-anytrading stocks-v0 (gym.make)"
        ),
        "ContinuousTrading / gym-anytrading (unwrapped)": ratio(
            "ContinuousTrading-v0 (unwrapped)", "gym-anytrading stocks-v0 (unwrapped)"
        ),
    }
    print("\nratios (symbol-steps/s; goals: >= 0.5 of the floor, >= 0.5 of gym-anytrading)")
    for name, value in ratios.items():
        print(f"  {name:<50}{value:>8.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "command": " ".join(["python", "benchmarks/envs.py", *sys.argv[1:]]),
                "machine": platform.platform(),
                "median_steps_per_s": median,
                "symbols": symbols,
                "ratios": ratios,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
