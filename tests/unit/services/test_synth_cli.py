"""`tradingbot data synth`: a seeded file the other commands read, and bad settings refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import main


def test_synth_writes_bars_that_inspect_reads_with_their_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "synthetic.csv.gz"

    code = main(["data", "synth", "--symbols", "5", "--bars", "780", "--seed", "4", str(out)])
    written = capsys.readouterr().out
    inspected = main(["data", "inspect", str(out)])
    report = capsys.readouterr().out

    assert code == 0 and inspected == 0
    assert written.startswith(f"wrote {out}: ") and "5 symbols at 780 timestamps (1min)" in written
    assert "symbols       5: SYN000, SYN001, SYN002, SYN003, SYN004" in report
    assert "bar interval  1min" in report
    assert "annualisation 98,280 periods/yr" in report


def test_synth_with_the_same_seed_writes_the_same_file(tmp_path: Path) -> None:
    args = ["data", "synth", "--symbols", "3", "--bars", "200", "--interval", "5min"]
    main([*args, "--seed", "9", str(tmp_path / "a.csv")])
    main([*args, "--seed", "9", str(tmp_path / "b.csv")])
    main([*args, "--seed", "10", str(tmp_path / "c.csv")])

    a, b, c = ((tmp_path / f"{n}.csv").read_bytes() for n in "abc")
    assert a == b
    assert a != c


def test_synth_refuses_impossible_settings_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["data", "synth", "--symbols", "0", str(tmp_path / "x.csv")])

    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "tradingbot data synth: symbols and bars must be at least 1"
    assert not (tmp_path / "x.csv").exists()
