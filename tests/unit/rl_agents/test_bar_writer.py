"""Synthetic bars written in the project's layouts and read back by its loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.bars import BarDataError, BarFrame
from core.synthetic import SynthConfig, synthesize
from rl_agents.bar_writer import write_bars
from rl_agents.data import load_bars, universe

FIELDS = ("timestamps", "open", "high", "low", "close", "volume", "present")


def same(a: BarFrame, b: BarFrame) -> bool:
    return a.symbols == b.symbols and all(
        np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in FIELDS
    )


@pytest.fixture(scope="module")
def bars() -> BarFrame:
    return synthesize(SynthConfig(symbols=6, bars=3 * 390, seed=11, halt_probability=0.05)).frame


@pytest.mark.parametrize("name", ["bars.csv", "bars.csv.gz", "bars.parquet"])
def test_the_loader_reads_back_the_frame_that_was_written(
    bars: BarFrame, tmp_path: Path, name: str
) -> None:
    path = write_bars(bars, tmp_path / name)

    loaded = load_bars(str(path))

    assert same(loaded, bars)
    assert loaded.repairs == ()


def test_the_shared_layout_has_its_header_and_one_row_per_present_bar(
    bars: BarFrame, tmp_path: Path
) -> None:
    lines = write_bars(bars, tmp_path / "bars.csv").read_text().splitlines()

    assert lines[0] == "timestamp,symbol,open,high,low,close,volume"
    assert lines[1].startswith("2024-01-02T09:30:00-05:00,SYN000,")
    assert len(lines) - 1 == int(bars.present.sum())


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    config = SynthConfig(symbols=3, bars=500, seed=5)
    a = write_bars(synthesize(config).frame, tmp_path / "a.csv.gz")
    b = write_bars(synthesize(config).frame, tmp_path / "b.csv.gz")

    assert a.read_bytes() == b.read_bytes()


def test_a_gappy_synthetic_universe_is_chosen_with_a_coverage(bars: BarFrame) -> None:
    with pytest.raises(BarDataError, match="lower min_coverage"):
        universe(bars, 6)

    chosen = universe(bars, 6, min_coverage=0.5)

    assert chosen.n_symbols == 6


def test_an_unknown_suffix_is_refused_and_nothing_is_written(
    bars: BarFrame, tmp_path: Path
) -> None:
    with pytest.raises(BarDataError, match=r"use \.csv, \.csv\.gz, \.parquet"):
        write_bars(bars, tmp_path / "bars.xlsx")

    assert list(tmp_path.iterdir()) == []
