"""The ablation harness end to end, small: each arm trained, served and replayed on held-out days.

``python -m benchmarks.ablation`` with two arms (plain SAC and the last arm,
which has every piece of phases A to C on), two seeds, a 5-symbol fleet and a
few hundred steps, against the session's real broker. What a user reads in
the table must come from real runs: one per (arm, seed), each evaluated on
test days after its training days, the spread taken over the seeds, and the
phases' own reports (option usage, HER success) read from the served policy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.ablation import ARMS, Run, arm_config, fold_table, main, phase_gates, tables_of
from rl_agents.checkpoints import load_checkpoint


def test_each_arm_adds_one_piece_to_the_arm_before_it() -> None:
    enabled = []
    for arm in [a for a in ARMS if a != "her0"]:
        config = arm_config(arm, seed=3, steps=1_000)
        pieces = {
            "icm": config.icm.enabled,
            "rewards": config.rewards.enabled,
            "options": config.options.enabled,
            "her": config.her.enabled,
        }
        enabled.append({k for k, on in pieces.items() if on})
        assert config.seed == 3 and config.total_timesteps == 1_000
    assert enabled == [set(), {"icm"}, {"icm", "rewards"}, {"icm", "rewards", "options"},
                       {"icm", "rewards", "options", "her"}]  # fmt: skip


def test_the_her_control_arm_is_her_without_relabelling() -> None:
    her, control = arm_config("her", seed=3, steps=1_000), arm_config("her0", seed=3, steps=1_000)
    assert control.her.enabled and control.her.k == 0 and her.her.k == 4
    assert control.to_dict() | {"her": None} == her.to_dict() | {"her": None}


def _her_runs(trained: tuple[float, float], served: tuple[float, float]) -> list[Run]:
    return [
        Run(0, arm, seed, 0, 1.0, training={"her/her_success_rate": t},
            phases={"her_served_success_rate": s})
        for arm, t, s in (("her", trained[0], served[0]), ("her0", trained[1], served[1]))
        for seed in (1, 2)
    ]  # fmt: skip


def _her_gates(runs: list[Run]) -> dict[str, tuple[str, str]]:
    return {g: (m, v) for g, arm, m, v in phase_gates(runs) if g.startswith("B: HER improvement")}


def test_the_walk_forward_table_gives_each_fold_against_buy_and_hold() -> None:
    runs = [
        Run(fold, arm, seed, 0, 1.0, metrics={"total_return": value}, test_days=f"days of {fold}")
        for fold, arm, seed, value in (
            (0, "plain", 1, 0.02), (0, "plain", 2, 0.04), (1, "plain", 1, -0.01),
            (0, "rewards", 1, -0.05), (1, "rewards", 1, 0.10),
        )
    ]  # fmt: skip
    references = {0: {"total_return": 0.01}, 1: {"total_return": 0.05}}

    lines = fold_table(runs, references).splitlines()

    assert lines[0] == "| fold (test days) | plain SAC | +rewards | buy-and-hold |"
    assert lines[2] == "| 0 (days of 0) | 3.0% ± 1.4% | -5.0% ± 0.0% | 1.0% |"
    assert lines[3] == "| 1 (days of 1) | -1.0% ± 0.0% | 10.0% ± 0.0% | 5.0% |"
    assert lines[4] == "| folds beating buy-and-hold | 1 of 2 | 1 of 2 | |"


def test_the_her_gate_compares_success_with_the_k0_control() -> None:
    gates = _her_gates(_her_runs(trained=(0.40, 0.20), served=(0.25, 0.20)))
    assert gates == {
        "B: HER improvement > 30% success (against k = 0), training episodes": ("+1.000", "pass"),
        "B: HER improvement > 30% success (against k = 0), served test days": ("+0.250", "fail"),
    }
    only_her = _her_gates(_her_runs((0.4, 0.2), (0.3, 0.2))[:2])
    assert only_her == {
        "B: HER improvement > 30% success (against k = 0)": ("", "not measured: run the her0 arm")
    }
    never = _her_gates(_her_runs(trained=(0.0, 0.0), served=(0.1, 0.0)))
    assert set(never.values()) == {
        ("+0.000", "not measured: success below 1% in both arms"),
        ("+inf", "pass"),
    }
    rare = _her_gates(_her_runs(trained=(0.006, 0.001), served=(0.02, 0.01)))
    assert set(rare.values()) == {
        ("+5.000", "not measured: success below 1% in both arms"),
        ("+1.000", "pass"),
    }


@pytest.fixture(scope="module")
def ablation(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("ablation")
    out = tmp / "runs.json"
    code = main(
        [
            "--arms", "plain,her", "--seeds", "1,2", "--steps", "240", "--symbols", "5",
            "--select-every", "120", "--runs-dir", str(tmp / "runs"), "--json", str(out),
            "--markdown", str(tmp / "table.md"), "--bootstrap", kafka_bootstrap,
        ]
    )  # fmt: skip
    assert code == 0
    document = json.loads(out.read_text())
    document["table"] = (tmp / "table.md").read_text()
    document["dir"] = str(tmp / "runs")
    return document


def test_every_arm_and_seed_is_trained_and_replayed_on_held_out_days(ablation: dict) -> None:
    runs = ablation["runs"]
    assert sorted((r["arm"], r["seed"]) for r in runs) == [
        ("her", 1), ("her", 2), ("plain", 1), ("plain", 2)
    ]  # fmt: skip
    for run in runs:
        assert run["exit_code"] == 0, run
        assert run["metrics"]["agents"] == 5, run
        assert run["test_days"].endswith("(38 days)"), run


def test_the_seeds_are_different_runs_and_the_table_gives_their_spread(ablation: dict) -> None:
    by_arm: dict[str, list[dict]] = {}
    for run in ablation["runs"]:
        by_arm.setdefault(run["arm"], []).append(run)
    for arm, runs in by_arm.items():
        hashes = set()
        for run in runs:
            path = Path(ablation["dir"]).glob(f"*/fold0-{arm}-seed{run['seed']}.pt")
            hashes.add(load_checkpoint(next(path)).version)
        assert len(hashes) == 2, f"{arm}: both seeds gave the same weights"
    assert "plain SAC (n=2)" in ablation["table"] and "+HER (n=2)" in ablation["table"]
    assert "±" in ablation["table"]


def test_the_served_phases_report_their_option_usage_and_goal_success(ablation: dict) -> None:
    full = [r for r in ablation["runs"] if r["arm"] == "her"]
    for run in full:
        keys = set(run["phases"])
        assert {"usage/open_long", "usage/wait", "persistence/mean"} <= keys, keys
        assert "her_served_success_rate" in keys, keys
    plain = [r for r in ablation["runs"] if r["arm"] == "plain"]
    assert all(not r["phases"] for r in plain)


def test_the_tables_are_printed_again_from_the_runs_json(ablation: dict, tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({k: v for k, v in ablation.items() if k not in ("table", "dir")}))
    assert tables_of(path) == ablation["table"].rstrip("\n")

    # Seeds run apart are one table again; a run of another ablation is refused.
    document = {k: v for k, v in ablation.items() if k not in ("table", "dir")}
    parts = []
    for seed in (1, 2):
        part = tmp_path / f"seed{seed}.json"
        runs = [r for r in document["runs"] if r["seed"] == seed]
        part.write_text(json.dumps({**document, "runs": runs}))
        parts.append(part)
    assert tables_of(*parts) == ablation["table"].rstrip("\n")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**document, "args": {**document["args"], "steps": "999"}}))
    with pytest.raises(ValueError, match="steps differ"):
        tables_of(parts[0], other)


def test_what_the_phases_measured_in_training_is_read_back_from_mlflow(ablation: dict) -> None:
    for run in ablation["runs"]:
        keys = set(run["training"])
        if run["arm"] == "plain":
            assert not keys, keys
            continue
        for objective in ("profit", "risk", "activity", "timing", "exploration"):
            assert f"rewards/{objective}_active" in keys, keys
        assert "rewards/weight_stability" in keys and "her/her_success_rate" in keys, keys
    assert "C: weight stability < 10%" in ablation["table"]
