"""``tradingbot report RUN``: one self-contained HTML file and its PNG charts, from the event log.

The report is a projection like any other: it reads the run's
``portfolio.events`` (the ledger, its decisions and marks), its
``market.bars`` (for buy-and-hold on the same days) and its
``monitor.alerts``, and computes every number with the ``core`` functions the
summary and the gate table use (``core.report``, ``core.gates``,
``core.collapse``), so the report and ``tradingbot summary`` cannot disagree.

Charts (each also embedded in ``index.html``):

- ``equity.png``: the fleet's equity and drawdown beside equal-weight
  buy-and-hold of the same symbols on the same days;
- ``pnl_by_symbol.png``: every agent's P&L (the best and worst 20 when more
  than 40 agents);
- ``actions.png``: the pooled histogram of raw actions and one row per agent
  (share of its actions in each of the 20 bins), most collapsed first;
- ``entropy.png``: each agent's action diversity (normalised entropy) over
  the run, as the collapse detector's window sees it, with the warning and
  critical thresholds;
- ``alerts.png``: collapse alerts from ``monitor.alerts`` on a timeline.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from core.collapse import BINS, ActionWindow, CollapseThresholds, action_bin
from core.events import (
    AccountMarked,
    BarClosed,
    CollapseDetected,
    DecisionRecorded,
    Event,
    PortfolioClosed,
    PortfolioOpened,
)
from core.gates import KIND_CODES, GateResult, GateTable, check_gates, gate_table
from core.report import Benchmark, buy_and_hold

NEW_YORK = ZoneInfo("America/New_York")
DETECTOR_WINDOW = 1000
"""The collapse detector's default count window (streams.collapse_detector.config)."""
MAX_ALERT_ROWS = 40
"""Alerts chart: at most this many agents, the most severe first."""
SHOWN_AGENTS = 20
"""P&L chart: the best and the worst this many when there are more than twice as many."""


class ReportError(RuntimeError):
    """The report cannot be made; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportData:
    """Everything the report shows, computed from the run's events."""

    table: GateTable
    benchmark: Benchmark
    equity: tuple[float, ...]
    """The fleet: the initial cash, then one point per mark."""
    times: tuple[int, ...]
    """Bar time of each mark (UTC ns)."""
    symbols: tuple[str, ...]
    histograms: npt.NDArray[np.float64]
    """``[agents, BINS]``: share of each agent's raw actions per bin."""
    diversity: npt.NDArray[np.float64]
    """``[marks, agents]``: diversity of each agent's window after each step (NaN before any)."""
    alerts: tuple[CollapseDetected, ...]
    thresholds: CollapseThresholds
    gates: tuple[GateResult, ...]


def closes(events: Sequence[Event], symbols: Sequence[str], steps: int) -> npt.NDArray[np.float64]:
    """``[steps, n]`` closes of the run's bars (NaN where a symbol had none)."""
    index = {s: j for j, s in enumerate(symbols)}
    out = np.full((steps, len(symbols)), np.nan)
    for e in events:
        if isinstance(e, BarClosed) and e.symbol in index and 0 <= e.step < steps:
            out[e.step, index[e.symbol]] = e.close
    return out


def build(
    ledger: Sequence[Event],
    bars: Sequence[Event],
    alerts: Sequence[Event],
    periods_per_year: int | None = None,
    thresholds: CollapseThresholds | None = None,
) -> ReportData:
    """Fold the run's events into what the report shows."""
    thresholds = thresholds or CollapseThresholds()
    opened = next((e for e in ledger if isinstance(e, PortfolioOpened)), None)
    if opened is None:
        raise ReportError("no PortfolioOpened on portfolio.events: not the events of a run")
    table = gate_table(ledger, periods_per_year)
    summary = table.summary
    symbols = opened.symbols
    index = {s: j for j, s in enumerate(symbols)}
    marks = [e for e in ledger if isinstance(e, AccountMarked)]
    counts = np.zeros((len(symbols), BINS))
    windows = [ActionWindow(size=DETECTOR_WINDOW) for _ in symbols]
    diversity = np.full((len(marks), len(symbols)), np.nan)
    mark = 0
    for e in ledger:
        if isinstance(e, DecisionRecorded):
            j = index[e.symbol]
            counts[j, action_bin(e.raw)] += 1
            windows[j].add(raw=e.raw, kind=KIND_CODES[e.kind], step=e.step)
        elif isinstance(e, AccountMarked):
            if mark > 0:  # the decisions of the step before are all in
                diversity[mark - 1] = [w.stats().diversity if len(w) else np.nan for w in windows]
            mark += 1
    if marks:
        diversity[-1] = [w.stats().diversity if len(w) else np.nan for w in windows]
    totals = counts.sum(axis=1, keepdims=True)
    histograms = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    steps = max((m.step for m in marks), default=-1) + 1
    close = closes(bars, symbols, steps)
    if steps == 0 or np.isnan(close).all():
        raise ReportError("the run has no bars on market.bars (was the log's retention passed?)")
    benchmark = buy_and_hold(close, summary.initial_equity, summary.annualisation)
    return ReportData(
        table=table,
        benchmark=benchmark,
        equity=(summary.initial_equity, *(m.equity for m in marks)),
        times=tuple(m.event_time for m in marks),
        symbols=symbols,
        histograms=histograms,
        diversity=diversity,
        alerts=tuple(e for e in alerts if isinstance(e, CollapseDetected)),
        thresholds=thresholds,
        gates=tuple(check_gates(table)),
    )


async def read_ledger(bootstrap: str, run_id: str, timeout_s: float = 60.0) -> list[Event]:
    """The run's ``portfolio.events``; waits for its close when the run is still going."""
    from services import kafka
    from streams.topics import PORTFOLIO_EVENTS

    ledger = await kafka.read_run(bootstrap, PORTFOLIO_EVENTS.name, run_id)
    if not ledger:
        raise ReportError(
            f"no run {run_id!r} on {PORTFOLIO_EVENTS.name} at {bootstrap} (the run id is "
            "printed by `tradingbot demo`; run the demo with --keep-running to keep its broker)"
        )
    if not any(isinstance(e, PortfolioClosed) for e in ledger):
        ledger = await kafka.read_run(
            bootstrap, PORTFOLIO_EVENTS.name, run_id, until=PortfolioClosed, timeout_s=timeout_s
        )
    return ledger


async def read(bootstrap: str, run_id: str) -> tuple[list[Event], list[Event], list[Event]]:
    """The run's ledger, bars and alerts from the broker."""
    from services import kafka
    from streams.topics import MARKET_BARS, MONITOR_ALERTS

    ledger = await read_ledger(bootstrap, run_id)
    bars = await kafka.read_run(bootstrap, MARKET_BARS.name, run_id)
    alerts = await kafka.read_run(bootstrap, MONITOR_ALERTS.name, run_id)
    return ledger, bars, alerts


# -------------------------------------------------------------------- charts


def _dates(times: Sequence[int]) -> list[datetime]:
    """New York wall-clock times (naive, so the axes label dates, not UTC hours)."""
    return [_local(t) for t in times]


def _local(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, NEW_YORK).replace(tzinfo=None)


def drawdown_curve(equity: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Fall from the running peak at each point, as a positive fraction."""
    curve = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(curve)
    return (peak - curve) / peak


def render(data: ReportData, out: Path) -> dict[str, Path]:
    """Draw every chart into ``out``; return their paths by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3})
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    summary = data.table.summary
    dates = mdates.date2num(_dates(data.times))
    yearly = summary.annualisation

    def date_axis(ax: Any) -> None:
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))

    # Equity and drawdown against buy-and-hold.
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    fleet = np.asarray(data.equity[1:])
    held = np.asarray(data.benchmark.equity)
    top.plot(dates, fleet, color="tab:blue", lw=1.8, label=f"fleet  {summary.total_return:+.2%}")
    top.plot(
        dates, held, color="tab:gray", lw=1.5, ls="--",
        label=f"{data.benchmark.label}  {data.benchmark.total_return:+.2%}",
    )  # fmt: skip
    top.axhline(summary.initial_equity, color="black", lw=0.8, alpha=0.5)
    top.set_ylabel("equity ($)")
    top.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    top.legend(loc="best")
    top.set_title(
        f"Run {summary.run_id}: equity, {summary.steps} steps x {summary.symbols} symbols\n"
        f"Sharpe fleet {summary.sharpe:.2f}, buy-and-hold {data.benchmark.sharpe:.2f} "
        f"(annualised with {yearly.periods_per_year:,} periods/yr)",
        fontsize=11,
    )
    bottom.fill_between(dates, -100 * drawdown_curve(fleet), color="tab:blue", alpha=0.35,
                        label=f"fleet (max {summary.max_drawdown:.1%})")  # fmt: skip
    bottom.plot(dates, -100 * drawdown_curve(held), color="tab:gray", lw=1.2, ls="--",
                label=f"buy-and-hold (max {data.benchmark.max_drawdown:.1%})")  # fmt: skip
    bottom.set_ylabel("drawdown (%)")
    bottom.legend(loc="lower left")
    date_axis(bottom)
    fig.tight_layout()
    paths["equity"] = _save(fig, out / "equity.png")

    # P&L by symbol.
    agents = sorted(data.table.agents, key=lambda a: (a.pnl, a.symbol))
    if len(agents) > 2 * SHOWN_AGENTS:
        shown = agents[:SHOWN_AGENTS] + agents[-SHOWN_AGENTS:]
        title = f"P&L by agent: the worst and the best {SHOWN_AGENTS} of {len(agents)}"
    else:
        shown, title = agents, f"P&L by agent ({len(agents)})"
    fig, ax = plt.subplots(figsize=(9, 0.24 * len(shown) + 1.4))
    values = [a.pnl for a in shown]
    colors = ["tab:green" if v > 0 else "tab:red" for v in values]
    ax.barh(range(len(shown)), values, color=colors)
    ax.set_yticks(range(len(shown)), [a.symbol for a in shown], fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    if len(shown) < len(agents):
        ax.axhline(SHOWN_AGENTS - 0.5, color="black", lw=0.8, ls=":")
    ax.set_xlabel("P&L ($, fees included, open positions at the last close)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:+,.0f}"))
    ax.set_title(title)
    fig.tight_layout()
    paths["pnl_by_symbol"] = _save(fig, out / "pnl_by_symbol.png")

    # Action histograms: pooled, then one row per agent (most concentrated first).
    order = np.argsort(-data.histograms.max(axis=1), kind="stable")
    n = len(data.symbols)
    row_h = 0.25 if n <= 40 else 0.13
    fig, (pooled, grid) = plt.subplots(
        2, 1, figsize=(9, 3.0 + row_h * n), gridspec_kw={"height_ratios": [2.2, row_h * n + 0.5]}
    )
    edges = np.linspace(-1.0, 1.0, BINS + 1)
    pooled.bar(edges[:-1], data.histograms.mean(axis=0), width=2.0 / BINS, align="edge",
               color="tab:blue", edgecolor="white")  # fmt: skip
    pooled.set_xlim(-1, 1)
    pooled.set_ylabel("share of actions")
    pooled.set_title(f"Raw actions in {BINS} bins: all agents pooled, then each agent")
    top_share = max(0.1, float(data.histograms.max()) if n else 0.1)
    image = grid.imshow(
        data.histograms[order], aspect="auto", cmap="viridis",
        norm=matplotlib.colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=top_share),
        extent=(-1.0, 1.0, n - 0.5, -0.5), interpolation="nearest",
    )  # fmt: skip
    grid.set_yticks(range(n), [data.symbols[j] for j in order], fontsize=6 if n > 40 else 8)
    grid.set_xlabel("raw action (sell -1 ... +1 buy); hold zone |a| < 0.1")
    grid.grid(False)
    grid.set_title("per agent, most concentrated first (colour: share of its actions)", fontsize=9)
    fig.colorbar(image, ax=grid, fraction=0.03, pad=0.02, label="share (square-root scale)")
    fig.tight_layout()
    paths["actions"] = _save(fig, out / "actions.png")

    # Diversity over time with the collapse thresholds.
    t = data.thresholds
    fig, ax = plt.subplots(figsize=(11, 5))
    alerted = {a.agent for a in data.alerts if a.metric == "entropy"}
    for j, symbol in enumerate(data.symbols):
        if symbol not in alerted:
            ax.plot(dates, data.diversity[:, j], color="tab:blue", lw=0.6, alpha=0.25)
    for j, symbol in enumerate(data.symbols):
        if symbol in alerted:
            ax.plot(dates, data.diversity[:, j], color="tab:purple", lw=1.2, alpha=0.8)
    with np.errstate(all="ignore"):
        median = np.nanmedian(data.diversity, axis=1) if n else np.zeros(len(dates))
    ax.plot(dates, median, color="black", lw=2.0, label="median agent")
    ax.axhline(t.diversity, color="tab:orange", ls="--", lw=1.5,
               label=f"warning below {t.diversity:.2f}")  # fmt: skip
    ax.axhline(t.diversity_critical, color="tab:red", ls="--", lw=1.5,
               label=f"critical below {t.diversity_critical:.2f}")  # fmt: skip
    ax.plot([], [], color="tab:blue", lw=0.8, alpha=0.5, label="one agent")
    if alerted:
        ax.plot(
            [], [], color="tab:purple", lw=1.2, label=f"{len(alerted)} agent(s) with entropy alerts"
        )
    if len(dates) > t.min_actions:
        ax.axvspan(float(dates[0]), float(dates[t.min_actions - 1]), color="0.85", alpha=0.6, lw=0,
                   label=f"not judged yet (fewer than {t.min_actions} actions)")  # fmt: skip
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("action diversity (entropy / ln 20)")
    ax.set_title(
        f"Action diversity over the run (detector window: last {DETECTOR_WINDOW} actions; "
        f"judged after {t.min_actions})"
    )
    ax.legend(loc="lower right", fontsize=9)
    date_axis(ax)
    fig.tight_layout()
    paths["entropy"] = _save(fig, out / "entropy.png")

    # Alerts timeline: one row per agent, the most severe first (at most MAX_ALERT_ROWS).
    markers = {"dominance": "s", "entropy": "o", "repeats": "^", "trade_frequency": "D"}
    severity_colors = {"warning": "tab:orange", "critical": "tab:red"}
    offsets = {"dominance": -0.3, "entropy": -0.1, "repeats": 0.1, "trade_frequency": 0.3}
    """Alerts of one agent at one time side by side, not on top of each other."""
    rank: dict[str, tuple[int, int]] = {}
    for alert in data.alerts:
        weight = (alert.severity == "critical", alert.metric != "trade_frequency")
        rank[alert.agent] = max(rank.get(alert.agent, (0, 0)), (int(weight[0]), int(weight[1])))
    ordered = sorted(rank, key=lambda a: (-rank[a][0], -rank[a][1], a))
    rows_shown = ordered[:MAX_ALERT_ROWS]
    fig, ax = plt.subplots(figsize=(11, max(2.6, 0.28 * len(rows_shown) + 1.8)))
    if rows_shown:
        row = {a: i for i, a in enumerate(rows_shown)}
        seen: set[tuple[str, str]] = set()
        for alert in data.alerts:
            if alert.agent not in row:
                continue
            key = (alert.metric, alert.severity)
            ax.scatter(
                [mdates.date2num(_local(alert.event_time))],
                [row[alert.agent] + offsets.get(alert.metric, 0.0)],
                marker=markers.get(alert.metric, "x"),
                color=severity_colors.get(alert.severity, "black"), alpha=0.8,
                s=24, label=f"{alert.metric} ({alert.severity})" if key not in seen else None,
            )  # fmt: skip
            seen.add(key)
        ax.set_yticks(range(len(rows_shown)), rows_shown, fontsize=8)
        ax.set_ylim(len(rows_shown) - 0.5, -0.5)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_xlim(float(dates[0]), float(dates[-1]))
        date_axis(ax)
    else:
        ax.text(0.5, 0.5, "no collapse alerts on monitor.alerts for this run",
                ha="center", va="center", transform=ax.transAxes, fontsize=12)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
    hidden = len(ordered) - len(rows_shown)
    ax.set_title(
        f"Collapse alerts ({len(data.alerts)}) of {len(ordered)} agent(s), at the bar time they "
        "fired" + (f"\nthe {len(rows_shown)} most severe shown; {hidden} more agent(s) in the "
                   "table below" if hidden else ""),
        fontsize=11,
    )  # fmt: skip
    fig.tight_layout()
    paths["alerts"] = _save(fig, out / "alerts.png")
    plt.close("all")
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


# -------------------------------------------------------------------- HTML


def numbers(data: ReportData) -> dict[str, Any]:
    """The report's numbers as JSON values (``report.json``)."""
    summary = data.table.summary
    return {
        "summary": {k: v for k, v in asdict(summary).items() if k != "action_mix"},
        "annualisation": summary.annualisation.describe(),
        "buy_and_hold": {k: v for k, v in asdict(data.benchmark).items() if k != "equity"},
        "fleet": asdict(data.table.fleet),
        "gates": [asdict(g) for g in data.gates],
        "agents": [asdict(a) for a in data.table.agents],
        "alerts": len(data.alerts),
    }


def write_report(data: ReportData, out: Path) -> Path:
    """Write ``index.html``, the PNGs and ``report.json`` into ``out``; return the HTML's path."""
    charts = render(data, out)
    (out / "report.json").write_text(json.dumps(numbers(data), indent=2, sort_keys=True))
    s = data.table.summary
    b = data.benchmark
    f = data.table.fleet
    esc = html.escape

    def img(name: str, alt: str) -> str:
        encoded = base64.b64encode(charts[name].read_bytes()).decode("ascii")
        return (
            f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{esc(alt)} ({charts[name].name})</figcaption></figure>"
        )

    rows = [
        ("total return", f"{s.total_return:+.2%}", f"{b.total_return:+.2%}"),
        ("max drawdown", f"{s.max_drawdown:.2%}", f"{b.max_drawdown:.2%}"),
        ("Sharpe", f"{s.sharpe:.2f}", f"{b.sharpe:.2f}"),
        ("final equity", f"${s.final_equity:,.2f}", f"${b.equity[-1]:,.2f}"),
    ]
    fleet_rows = [
        ("trades", f"{s.trades} ({s.buys} buys, {s.sells} sells)"),
        ("fees paid", f"${s.fees:,.2f}"),
        ("win rate", f"{s.win_rate:.1%} of {s.closed_trades} closing trades"),
        ("trades per day", f"{f.trades_per_day:.2f}"),
        ("action diversity (mean / min agent)", f"{f.diversity:.3f} / {f.min_diversity:.3f}"),
        ("dominant-bin share (max agent)", f"{f.dominant_bin:.1%}"),
        ("trade frequency", f"{f.trade_frequency:.1%}"),
        ("profitable agents", f"{f.profitable_agents} / {f.agents}"),
        ("skipped orders", ", ".join(f"{k} {v}" for k, v in s.skipped.items()) or "none"),
        ("clipped orders", ", ".join(f"{k} {v}" for k, v in s.clipped.items()) or "none"),
    ]
    gates = "".join(
        f"<tr><td class={'pass' if g.passed else 'fail'}>{'PASS' if g.passed else 'FAIL'}</td>"
        f"<td>{esc(g.gate)}</td><td>{g.value:.3f}</td><td>{esc(g.limit)}</td></tr>"
        for g in data.gates
    )
    alerted: dict[str, dict[str, str]] = {}
    for alert in data.alerts:
        kinds = alerted.setdefault(alert.agent, {})
        if kinds.get(alert.metric) != "critical":
            kinds[alert.metric] = alert.severity
    agents = "".join(
        f"<tr><td>{esc(a.symbol)}</td><td>{a.pnl:+,.2f}</td><td>{a.sharpe:.2f}</td>"
        f"<td>{a.max_drawdown:.1%}</td><td>{a.win_rate:.1%}</td><td>{a.trades}</td>"
        f"<td>{a.diversity:.3f}</td><td>{a.dominant_bin:.1%}</td><td>{a.trade_frequency:.1%}</td>"
        f"<td>{esc(', '.join(f'{m} ({v})' for m, v in alerted.get(a.symbol, {}).items()))}</td>"
        "</tr>"
        for a in sorted(data.table.agents, key=lambda a: -a.pnl)
    )
    first = datetime.fromtimestamp(data.times[0] / 1e9, NEW_YORK).date()
    last = datetime.fromtimestamp(data.times[-1] / 1e9, NEW_YORK).date()
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tradingbot report {esc(s.run_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.pass {{ color: #1a7f37; font-weight: bold; }} .fail {{ color: #cf222e; font-weight: bold; }}
img {{ max-width: 100%; }} figcaption {{ color: #666; font-size: 0.9em; }}
</style></head><body>
<h1>Run {esc(s.run_id)}</h1>
<p>{s.steps} steps ({first} .. {last}) x {s.symbols} symbols, read back from
<code>portfolio.events</code>, <code>market.bars</code> and <code>monitor.alerts</code>.
Sharpe annualised with {esc(s.annualisation.describe())}.</p>
<h2>Fleet and buy-and-hold on the same days</h2>
<table><tr><th></th><th>fleet</th><th>{esc(b.label)}</th></tr>
{"".join(f"<tr><td>{n}</td><td>{x}</td><td>{y}</td></tr>" for n, x, y in rows)}</table>
<table>{"".join(f"<tr><td>{n}</td><td>{esc(v)}</td></tr>" for n, v in fleet_rows)}</table>
{img("equity", "Equity and drawdown against buy-and-hold")}
<h2>Hard gates</h2>
<table><tr><th></th><th>gate</th><th>value</th><th>limit</th></tr>{gates}</table>
<h2>P&amp;L by agent</h2>
{img("pnl_by_symbol", "P&L by agent")}
<h2>Actions and collapse</h2>
{img("actions", "Action histograms")}
{img("entropy", "Action diversity over time with the collapse thresholds")}
{img("alerts", "Collapse alerts on a timeline")}
<h2>Every agent</h2>
<table><tr><th>agent</th><th>P&amp;L ($)</th><th>Sharpe</th><th>max drawdown</th>
<th>win rate</th><th>trades</th><th>diversity</th><th>dominant bin</th><th>trade freq.</th>
<th>alerts</th></tr>
{agents}</table>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def make_report(
    bootstrap: str, run_id: str, out: Path, periods_per_year: int | None = None
) -> tuple[ReportData, Path]:
    """Read the run from the broker and write its report into ``out``."""
    ledger, bars, alerts = asyncio.run(read(bootstrap, run_id))
    data = build(ledger, bars, alerts, periods_per_year)
    return data, write_report(data, out)


__all__ = ["ReportData", "ReportError", "build", "make_report", "write_report"]
