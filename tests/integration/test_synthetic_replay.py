"""Synthetic minute bars, written to a file and loaded, replayed through the real broker.

Six synthetic symbols with missing bars and halts, two sessions of minutes,
go through market-replay -> symbol agent -> portfolio manager (lockstep) on
the Kafka the project starts: the run closes, every step is marked, and a
symbol decides at every bar it has and nowhere else.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from core.events import AccountMarked, DecisionRecorded, Event, OrderFilled, PortfolioClosed
from core.synthetic import SynthConfig, synthesize
from rl_agents.bar_writer import write_bars
from rl_agents.data import load_bars, universe
from services.kafka import read_run
from services.pipeline import run_lockstep
from streams.topics import PORTFOLIO_EVENTS


def test_a_gappy_synthetic_file_replays_and_symbols_trade_only_where_they_have_bars(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    generated = synthesize(SynthConfig(symbols=6, bars=120, seed=21, halt_probability=0.3))
    path = write_bars(generated.frame, tmp_path / "synthetic.csv.gz")
    frame = universe(load_bars(str(path)), 6, min_coverage=0.5)
    assert not frame.present.all()  # the run has gaps to handle
    run_id = "it-synthetic-6x120"

    state, _ = asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=frame))
    ledger: list[Event] = asyncio.run(read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, run_id))

    assert state.closed
    assert len([e for e in ledger if isinstance(e, PortfolioClosed)]) == 1
    assert len([e for e in ledger if isinstance(e, AccountMarked)]) == frame.n_steps
    index = {s: j for j, s in enumerate(frame.symbols)}
    decided = [(e.step, e.symbol) for e in ledger if isinstance(e, DecisionRecorded)]
    filled = [(e.step, e.symbol) for e in ledger if isinstance(e, OrderFilled)]
    assert decided and filled
    assert all(frame.present[step, index[symbol]] for step, symbol in decided + filled)
    present = {(int(t), frame.symbols[j]) for t, j in np.argwhere(frame.present)}
    assert set(decided) == present  # one decision per bar, none where a symbol has no bar
