"""The ``tradingbot`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from core.bars import BarDataError
from core.gates import gate_table
from rl_agents.data import BYTETHEORY, DEFAULT_UNIVERSE, days_option
from services import kafka, synth_cli
from services.db import cli as db_cli
from services.demo import (
    REPO,
    DemoError,
    DemoOptions,
    format_monitoring,
    format_summary,
    run_demo,
)
from services.errors import Refusal
from services.evaluation import EvaluationError
from services.fleet import FLEETS
from services.models import ModelError
from services.monitoring import MonitoringError
from services.report import ReportError

SERVICE_MODULES = {
    "market-replay": "services.market_replay.app",
    "symbol-agent": "services.symbol_agent.app",
    "portfolio-manager": "services.portfolio_manager.app",
    "timescale-sink": "services.timescale_sink.app",
}


def _speed(text: str) -> str:
    from services.market_replay.app import speed_factor

    try:
        speed_factor(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def with_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """End every option's help of ``parser`` and its subcommands with the option's default."""
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its actions there
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                with_defaults(sub)
            continue
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):  # noqa: SLF001
            continue
        text = action.help or ""
        if "default" in text or "%(default)" in text:
            continue
        if action.nargs == 0:  # a flag
            note = "off unless given"
        elif action.default is None:
            note = "default: not set"
        elif isinstance(action.default, list) and not action.default:
            note = "default: none"
        else:
            note = f"default: {str(action.default).replace('%', '%%')}"
        action.help = f"{text} ({note})" if text else f"({note})"
    return parser


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradingbot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="replay history through the whole stack")
    demo.add_argument(
        "--dataset",
        default=BYTETHEORY,
        help="'bytetheory', a CSV, CSV.gz or Parquet file, or a folder of one file per symbol",
    )
    demo.add_argument("--symbols", type=_positive, default=DEFAULT_UNIVERSE, help="fleet size")
    demo.add_argument("--start", type=_non_negative, default=0, help="first timestamp index")
    demo.add_argument(
        "--steps", type=_positive, default=None, help="timestamps to replay (default: all left)"
    )
    demo.add_argument(
        "--min-coverage",
        type=_share,
        default=1.0,
        help="share of timestamps a symbol needs a bar at (1: every one; lower it for gappy data)",
    )
    demo.add_argument(
        "--bootstrap", default=None, help="use this running broker instead of the local Kafka"
    )
    demo.add_argument(
        "--kafka-port",
        type=int,
        default=int(os.environ.get("KAFKA_PORT", "9092")),
        help="port of the local Kafka the demo starts (default 9092 or $KAFKA_PORT)",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave Kafka running after the demo (stop it with `make stop`)",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument(
        "--mode",
        choices=("lockstep", "paced"),
        default="lockstep",
        help="lockstep: each step waits for every action; paced: bars keep their own schedule "
        "and an action later than the next bar is recorded missed (default: %(default)s)",
    )
    demo.add_argument(
        "--speed",
        type=_speed,
        default="max",
        help="paced mode: a multiple of real time (1x, 60x) or max (default: %(default)s)",
    )
    demo.add_argument(
        "--agents",
        type=_positive,
        default=1,
        help="symbol-agent processes sharing the bars as one consumer group; the 2nd and "
        "later serve /metrics on 9111, 9112, ... (default: %(default)s)",
    )
    demo.add_argument(
        "--fleet",
        choices=FLEETS,
        default="sac",
        help="sac: the trained SAC fleet shipped in rl_agents/fleets (momentum when the data "
        "has other symbols); momentum: the baseline; mixed: momentum with every 10th agent "
        "serving the collapsed always-BUY_SMALL discrete policy",
    )
    demo.add_argument(
        "--no-monitoring", action="store_true", help="do not start Prometheus and Alertmanager"
    )
    demo.add_argument(
        "--metrics-port",
        type=int,
        default=9101,
        help="first /metrics port: replay, agent, portfolio manager, detector (9101-9104)",
    )
    demo.add_argument(
        "--no-database", action="store_true", help="do not start TimescaleDB and its sink"
    )
    demo.add_argument(
        "--db-port",
        type=int,
        default=int(os.environ.get("TIMESCALEDB_PORT", "5433")),
        help="port of the local TimescaleDB (default 5433 or $TIMESCALEDB_PORT)",
    )
    demo.add_argument(
        "--prometheus-port", type=int, default=9090, help="port of the Prometheus the demo starts"
    )
    demo.add_argument(
        "--alertmanager-port", type=int, default=9093, help="port of its Alertmanager"
    )
    demo.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")
    _periods_option(demo)
    add_loader_options(demo)
    demo.add_argument("--runs-dir", type=Path, default=REPO / "runs", help="service logs go here")

    commands.add_parser(
        "train", help="train SAC and save a checkpoint (options: `tradingbot train --help`)"
    )

    agents = commands.add_parser("agents", help="publish or roll back the model the agents serve")
    agent_commands = agents.add_subparsers(dest="agents_command", required=True)
    publish = agent_commands.add_parser("publish", help="serve a SAC checkpoint from now on")
    publish.add_argument("checkpoint", type=Path)
    rollback = agent_commands.add_parser("rollback", help="return to the previous model")
    for sub in (publish, rollback):
        sub.add_argument("--bootstrap", default="127.0.0.1:9092")
        sub.add_argument("--agent", default="fleet", help="model key (TRADINGBOT_AGENT_MODEL_ID)")

    evaluate = commands.add_parser(
        "evaluate",
        help="the gate table of a trained fleet and the baselines on held-out days",
        description="Replay the SAC fleet, the discrete PPO baseline, buy-and-hold and a "
        "random policy over the held-out days through the streaming pipeline and print the "
        "plan's gate table. Exit code 5 when a hard gate of the SAC fleet fails.",
    )
    evaluate.add_argument("--sac", type=Path, default=None, help="SAC checkpoint to judge")
    evaluate.add_argument("--ppo", type=Path, default=None, help="discrete PPO baseline (.zip)")
    evaluate.add_argument(
        "--dataset",
        default=BYTETHEORY,
        help="'bytetheory', a CSV, CSV.gz or Parquet file or a folder (options: PATH?key=value, "
        "docs/data.md)",
    )
    evaluate.add_argument(
        "--symbols", type=_positive, default=DEFAULT_UNIVERSE, help="fleet size (>= 1)"
    )
    evaluate.add_argument(
        "--span", choices=("test", "validation"), default="test", help="which held-out days"
    )
    evaluate.add_argument(
        "--days",
        type=days_option,
        default=None,
        metavar="START:STOP",
        help="the slice of the data the fleet was trained on (`tradingbot train --days`); "
        "the span is cut from it (default: all)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    evaluate.add_argument("--bootstrap", default=None, help="use this running broker")
    evaluate.add_argument(
        "--kafka-port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092"))
    )
    evaluate.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    evaluate.add_argument("--runs-dir", type=Path, default=REPO / "runs")

    topics = commands.add_parser("topics", help="create the topics on a broker")
    topics.add_argument("--bootstrap", default="127.0.0.1:9092")

    serve = commands.add_parser("serve", help="run one service (settings from TRADINGBOT_*)")
    serve.add_argument("service", choices=sorted(SERVICE_MODULES))

    db_cli.add_parser(commands)

    data = commands.add_parser("data", help="look at a bar file before replaying it")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    inspect = data_commands.add_parser(
        "inspect",
        help="print symbols, span, bar interval, sessions, gaps and problems of bar data",
        description="Read bar data as `tradingbot demo --dataset` would and say what is in it. "
        "PATH is 'bytetheory', a CSV, CSV.gz or Parquet file, or a folder of one file per "
        "symbol (docs/data.md).",
    )
    inspect.add_argument("path", help="the bar data")
    add_loader_options(inspect)
    synth_cli.add_parser(data_commands)

    summary = commands.add_parser("summary", help="summarise a run from portfolio.events")
    summary.add_argument("run_id")
    summary.add_argument("--bootstrap", default="127.0.0.1:9092")
    summary.add_argument("--json", action="store_true", help="print JSON instead of text")
    _periods_option(summary)

    report = commands.add_parser(
        "report",
        help="an HTML report with PNG charts of a run, from the event log",
        description="Read a run's portfolio.events, market.bars and monitor.alerts and write "
        "index.html (self-contained), the PNG charts and report.json: equity and drawdown "
        "against buy-and-hold, P&L by agent, action histograms, action diversity over time "
        "with the collapse thresholds, alerts on a timeline and the gate table.",
    )
    report.add_argument("run_id", help="the run (printed by `tradingbot demo`)")
    report.add_argument("--bootstrap", default="127.0.0.1:9092", help="the broker holding the run")
    report.add_argument(
        "--out", type=Path, default=None, help="folder of the report (default: runs/RUN_ID/report)"
    )
    _periods_option(report)
    return with_defaults(parser)


def add_loader_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``core.layouts.LoadOptions`` (for layouts other than the project's)."""
    group = parser.add_argument_group("reading other layouts (docs/data.md)")
    group.add_argument(
        "--symbol",
        default=None,
        help="symbol of a file without a symbol column (default: from "
        "the file name, SPY.csv -> SPY)",
    )
    order = group.add_mutually_exclusive_group()
    order.add_argument(
        "--day-first",
        dest="day_first",
        action="store_const",
        const=True,
        default=None,
        help="dates are dd.mm.yyyy / dd/mm/yyyy (default: detected from the values)",
    )
    order.add_argument(
        "--month-first",
        dest="day_first",
        action="store_const",
        const=False,
        help="dates are mm/dd/yyyy",
    )
    group.add_argument(
        "--tz",
        default=None,
        help="time zone of times without a UTC offset (default: "
        "America/New_York, or UTC for a column named GMT/UTC)",
    )
    group.add_argument(
        "--session",
        default="all",
        help="'all', 'regular' (09:30-16:00 America/New_York) or 'HH:MM-HH:MM Area/City'",
    )
    group.add_argument(
        "--adj-close",
        choices=("adjust", "ignore"),
        default="adjust",
        help="scale prices by Adj Close / Close, or ignore that column",
    )
    group.add_argument(
        "--column", action="append", default=[], metavar="FIELD=NAME",
        help="name the column of a field (timestamp, symbol, open, high, low, close, adj_close, "
        "volume); repeat for several",
    )  # fmt: skip


def dataset_spec(args: argparse.Namespace, path: str) -> str:
    """``path`` with the loader options given on the command line (``PATH?key=value&...``)."""
    from core.layouts import LoadOptions

    if path == BYTETHEORY:
        return path
    columns = []
    for item in args.column:
        field, sep, name = item.partition("=")
        if not sep or not name:
            raise BarDataError("--column", None, f"{item!r} is not FIELD=NAME (e.g. timestamp=Day)")
        columns.append((field.strip(), name))
    options = LoadOptions(
        symbol=args.symbol,
        day_first=args.day_first,
        timezone=args.tz,
        session=args.session,
        adjust="none" if args.adj_close == "ignore" else "adj-close",
        columns=tuple(columns),
    )
    return path + options.query() if "?" not in path else path


def _periods_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--periods-per-year",
        type=_positive,
        default=None,
        help="annualise Sharpe with this many periods a year (default: derived from the bars' "
        "interval and sessions: 252 for daily equities, 105120 for 5-minute bars around the clock)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # the trainer's options (SACConfig's) and --alerts-bootstrap
        from services.training import main as train_main

        return train_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "db":
        return db_cli.run(args)
    try:
        if args.command == "data":
            if args.data_command == "synth":
                return synth_cli.run(args)
            from core.layouts import inspect_lines
            from rl_agents.data import load_bars

            print("\n".join(inspect_lines(load_bars(dataset_spec(args, args.path)))))
        elif args.command == "demo":
            options = DemoOptions(
                dataset=dataset_spec(args, args.dataset),
                symbols=args.symbols,
                start=args.start,
                steps=args.steps,
                min_coverage=args.min_coverage,
                bootstrap=args.bootstrap,
                kafka_port=args.kafka_port,
                keep_running=args.keep_running,
                progress=not args.no_progress,
                json_path=args.json,
                runs_dir=args.runs_dir,
                fleet=args.fleet,
                monitoring=not args.no_monitoring,
                metrics_port=args.metrics_port,
                prometheus_port=args.prometheus_port,
                alertmanager_port=args.alertmanager_port,
                database=not args.no_database,
                db_port=args.db_port,
                periods_per_year=args.periods_per_year,
                mode=args.mode,
                speed=args.speed,
                agents=args.agents,
            )
            result = run_demo(options)
            print(format_summary(result.summary, benchmark=result.benchmark, table=result.table))
            print(format_monitoring(result))
        elif args.command == "evaluate":
            from services.evaluation import EvaluationOptions, format_tables, run_evaluation

            outcome = run_evaluation(
                EvaluationOptions(
                    sac=args.sac,
                    ppo=args.ppo,
                    dataset=args.dataset,
                    symbols=args.symbols,
                    span=args.span,
                    days=args.days,
                    seed=args.seed,
                    bootstrap=args.bootstrap,
                    kafka_port=args.kafka_port,
                    runs_dir=args.runs_dir,
                    json_path=args.json,
                )
            )
            print(format_tables(outcome))
            if not outcome.passed:
                return 5
        elif args.command == "agents":
            from services import models

            if args.agents_command == "publish":
                from rl_agents.checkpoints import load_checkpoint

                path = args.checkpoint.resolve()
                version = load_checkpoint(path).version
                event = asyncio.run(models.publish(args.bootstrap, str(path), version, args.agent))
            else:
                event = asyncio.run(models.rollback(args.bootstrap, args.agent))
            print(
                f"{event.reason}: the agents serve {event.version} "
                f"(was {event.previous_version}) from their next step"
            )
        elif args.command == "topics":
            created = asyncio.run(kafka.create_topics(args.bootstrap))
            print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
        elif args.command == "serve":
            import importlib

            from services.runner import run_service

            module = importlib.import_module(SERVICE_MODULES[args.service])
            run_service(args.service, module.main)
        elif args.command == "report":
            from services.report import make_report

            out = args.out or REPO / "runs" / args.run_id / "report"
            data, index = make_report(args.bootstrap, args.run_id, out, args.periods_per_year)
            s = data.table.summary
            print(
                f"report of {s.run_id}: {s.steps} steps x {s.symbols} symbols, total return "
                f"{s.total_return:+.2%} (buy-and-hold {data.benchmark.total_return:+.2%}), "
                f"Sharpe {s.sharpe:.2f} annualised with {s.annualisation.describe()}"
            )
            print(f"  {index}")
            for png in sorted(out.glob("*.png")):
                print(f"  {png}")
        elif args.command == "summary":
            from services.report import read_ledger

            events = asyncio.run(read_ledger(args.bootstrap, args.run_id))
            table = gate_table(events, args.periods_per_year)
            run = table.summary
            print(
                json.dumps(asdict(run), indent=2) if args.json else format_summary(run, table=table)
            )
    except (
        DemoError,
        BarDataError,
        kafka.BrokerError,
        MonitoringError,
        ModelError,
        EvaluationError,
        ReportError,
    ) as e:
        print(f"tradingbot {args.command}: {e}", file=sys.stderr)
        return 1
    except Refusal as e:
        print(f"tradingbot {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
