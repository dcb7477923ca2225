"""`tradingbot data inspect`: what a user sees of a file, and of a bad one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.cli import main


def test_inspect_prints_symbols_span_interval_sessions_and_annualisation(
    capsys: pytest.CaptureFixture[str], shared_data: Callable[[str], Path]
) -> None:
    path = shared_data("us_equities_1min_2013-10.csv")

    code = main(["data", "inspect", str(path), "--session", "regular"])

    out = capsys.readouterr().out
    assert code == 0
    assert "symbols       4: AIG, BAC, IBM, SPY" in out
    assert "span          2013-10-04T09:30:00-04:00 .. 2013-10-11T15:59:00-04:00" in out
    assert "bar interval  1min" in out
    assert "sessions      390 bars a session, weekdays" in out
    assert "annualisation 98,280 periods/yr" in out
    assert "session 09:30-16:00 America/New_York: 4072 of 13429 bars outside it dropped" in out


def test_inspect_of_a_bad_file_names_file_row_and_problem_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "AAPL.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Volume\n2020-01-06,1,2,1,1.5,100\n2020-01-07,1,0.5,1,1,1\n"
    )

    code = main(["data", "inspect", str(path)])

    assert code == 1
    assert capsys.readouterr().err.strip() == (
        f"tradingbot data: {path}, row 3: high 0.5 is below low 1.0"
    )


def test_an_unknown_time_zone_is_refused_with_how_to_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["data", "inspect", str(tmp_path), "--tz", "Mars/Olympus"])

    assert code == 1
    assert "time zone 'Mars/Olympus' is unknown (use an IANA name" in capsys.readouterr().err


def test_every_option_of_every_command_shows_its_default() -> None:
    import argparse

    from services.cli import _parser
    from services.training import parser as train_parser

    def walk(parser: argparse.ArgumentParser, name: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    missing += walk(sub, f"{name} {sub_name}")
            elif action.option_strings and not isinstance(action, argparse._HelpAction):
                text = action.help or ""
                if "default" not in text and "off unless given" not in text:
                    missing.append(f"{name} {action.option_strings[0]}")
        return missing

    assert walk(_parser(), "tradingbot") == []
    assert walk(train_parser(), "tradingbot train") == []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["demo", "--symbols", "0"], "argument --symbols: must be >= 1, got 0"),
        (["demo", "--min-coverage", "1.5"], "argument --min-coverage: must be a share in (0, 1]"),
        (["demo", "--steps", "ten"], "argument --steps: must be a whole number >= 1, got 'ten'"),
        (["demo", "--fleet", "ppo"], "argument --fleet: invalid choice: 'ppo'"),
    ],
)
def test_bad_options_are_refused_with_the_reason_and_exit_2(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert problem in capsys.readouterr().err
