"""The plan's gate table: per-agent and fleet measures of one run, and the hard gates.

``gate_table(events)`` folds one run's ``portfolio.events`` (the ledger, its
decisions and marks) into a ``GateTable``; nothing else is read, so a table
made from a streaming run and one made from the same events offline agree.

Per agent (one symbol's policy):

- **P&L**: the agent's cash flows (sell proceeds less fees, minus buy
  notional and fees) plus its position at the latest close.
- **Sharpe, max drawdown**: of the agent's contribution curve, the book's
  initial cash plus the agent's P&L, one point per step: what the portfolio
  would have done with this agent's trades alone. (An equal "sleeve" of
  ``initial_cash / n`` does not work: one agent may hold up to 15% of the
  book, and its loss can exceed its sleeve.)
- **win rate**: the share of its closing sells that realised a gain (the
  ledger's rule, ``core.ledger``); NaN-free: 0 when it never sold.
- **trades per day**: fills per replayed step.
- **diversity, dominant-bin share, trade frequency**: ``core.collapse``
  statistics over every action of the run (the detector's and the training
  monitor's rule).

For the fleet: the portfolio's Sharpe, drawdown, return and win rate
(``core.report.summarize``), fills per step, the mean of the agents'
diversities, the largest dominant-bin share, the pooled trade frequency
(fills over settled actions of all agents) and the number of profitable
agents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from core.actions import ActionKind
from core.collapse import ActionWindow
from core.events import (
    AccountMarked,
    DecisionRecorded,
    Event,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
)
from core.ledger import PortfolioState, evolve
from core.performance import max_drawdown, sharpe_ratio, step_returns
from core.report import RunSummary, summarize

KIND_CODES = {kind.name.lower(): int(kind) for kind in ActionKind}
"""``DecisionRecorded.kind`` to its ``ActionKind`` code."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentGates:
    """One agent's row of the gate table."""

    symbol: str
    pnl: float
    sharpe: float
    max_drawdown: float
    win_rate: float
    closed_trades: int
    trades: int
    trades_per_day: float
    actions: int
    diversity: float
    dominant_bin: float
    trade_frequency: float

    @property
    def profitable(self) -> bool:
        """Whether the agent ended with a positive P&L."""
        return self.pnl > 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetGates:
    """The fleet's row of the gate table."""

    total_return: float
    sharpe: float
    max_drawdown: float
    win_rate: float
    trades: int
    trades_per_day: float
    diversity: float
    """Mean of the agents' diversities."""
    min_diversity: float
    dominant_bin: float
    """The largest dominant-bin share of any agent."""
    trade_frequency: float
    """Fills over settled actions, all agents pooled."""
    profitable_agents: int
    agents: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GateTable:
    """Per-agent rows and the fleet row of one run."""

    run_id: str
    steps: int
    fleet: FleetGates
    agents: tuple[AgentGates, ...]
    summary: RunSummary


@dataclass(frozen=True, slots=True, kw_only=True)
class GateLimits:
    """The hard gates of a trained fleet (the issue's values by default)."""

    max_dominance: float = 0.60
    """No agent may put more than this share of its actions in one bin."""
    min_diversity: float = 0.40
    """The fleet's mean action diversity must be above this."""
    trade_frequency: tuple[float, float] = (0.05, 0.60)
    """The fleet's trade frequency must lie in this range."""

    def tightened(self, margin: float) -> GateLimits:
        """These limits with every bound moved ``margin`` inwards: dominance at most
        ``max_dominance - margin``, diversity above ``min_diversity + margin``, trade
        frequency in ``[low + margin, high - margin]``.

        A checkpoint chosen on a few validation days by limits it barely meets is likely
        to miss them on the next days; the selection asks for the margin.
        """
        low, high = self.trade_frequency
        if not 0.0 <= margin < 0.5:
            raise ValueError(f"a margin is a share in [0, 0.5), got {margin}")
        if low + margin > high - margin:
            raise ValueError(f"margin {margin} empties the trade frequency range [{low}, {high}]")
        return GateLimits(
            max_dominance=self.max_dominance - margin,
            min_diversity=self.min_diversity + margin,
            trade_frequency=(low + margin, high - margin),
        )


@dataclass(frozen=True, slots=True)
class GateResult:
    """One hard gate: what was measured, against what, and whether it passed."""

    gate: str
    value: float
    limit: str
    passed: bool


def gate_table(events: Iterable[Event], periods_per_year: int | None = None) -> GateTable:
    """The gate table of one run's portfolio events (in log order).

    Sharpe ratios are annualised as the run's summary is (``core.report.summarize``):
    with ``periods_per_year`` when given, else from the bars' interval.
    """
    events = list(events)
    state = PortfolioState()
    symbols: tuple[str, ...] = ()
    index: dict[str, int] = {}
    windows: list[ActionWindow] = []
    cash_flow = np.zeros(0)
    trades = np.zeros(0, dtype=np.int64)
    closed = np.zeros(0, dtype=np.int64)
    won = np.zeros(0, dtype=np.int64)
    curves: list[np.ndarray] = []
    for event in events:
        before = state
        state = evolve(state, event)
        if isinstance(event, PortfolioOpened):
            symbols = event.symbols
            index = {s: j for j, s in enumerate(symbols)}
            n = len(symbols)
            # Every action of the run stays in its window: the whole run is judged.
            windows = [ActionWindow(size=1 << 30) for _ in symbols]
            cash_flow, trades = np.zeros(n), np.zeros(n, dtype=np.int64)
            closed, won = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
            curves = [np.zeros(n)]
        elif isinstance(event, DecisionRecorded):
            windows[index[event.symbol]].add(
                raw=event.raw, kind=KIND_CODES[event.kind], step=event.step
            )
        elif isinstance(event, OrderFilled):
            j = index[event.symbol]
            sign = 1.0 if event.side == "sell" else -1.0
            cash_flow[j] += sign * event.notional - event.fee
            trades[j] += 1
            closed[j] += state.closed_trades - before.closed_trades
            won[j] += state.winning_trades - before.winning_trades
            windows[j].settle(event.step - 1, filled=True)  # decided the step before
        elif isinstance(event, OrderSkipped):
            windows[index[event.symbol]].settle(event.step - 1, filled=False)
        elif isinstance(event, PortfolioClosed):
            for window in windows:  # nothing fills after the close: every action is settled
                window.settle_through(event.steps)
        elif isinstance(event, AccountMarked):
            held = np.zeros(len(symbols))
            for holding in event.holdings:
                held[index[holding.symbol]] = holding.quantity * holding.close
            curves.append(cash_flow + held)
            for window in windows:
                window.settle_through(event.step - 1)
    if not state.opened:
        raise ValueError("no PortfolioOpened event: not the events of a run")
    summary = summarize(events, periods_per_year)
    yearly = summary.annualisation.periods_per_year
    steps = max(summary.steps, 1)
    pnl = np.array(curves)  # [marks + 1, n]
    curve = state.initial_cash + pnl
    agents = []
    all_stats = [window.stats() for window in windows]
    for j, symbol in enumerate(symbols):
        stats = all_stats[j]
        agents.append(
            AgentGates(
                symbol=symbol,
                pnl=float(pnl[-1, j]),
                sharpe=sharpe_ratio(step_returns(curve[:, j]), yearly),
                max_drawdown=max_drawdown(curve[:, j]),
                win_rate=float(won[j] / closed[j]) if closed[j] else 0.0,
                closed_trades=int(closed[j]),
                trades=int(trades[j]),
                trades_per_day=float(trades[j] / steps),
                actions=stats.actions,
                diversity=stats.diversity,
                dominant_bin=stats.dominant_bin,
                trade_frequency=stats.trade_frequency,
            )
        )
    settled = sum(stats.settled for stats in all_stats)
    fleet = FleetGates(
        total_return=summary.total_return,
        sharpe=summary.sharpe,
        max_drawdown=summary.max_drawdown,
        win_rate=summary.win_rate,
        trades=summary.trades,
        trades_per_day=summary.trades / steps,
        diversity=float(np.mean([a.diversity for a in agents])) if agents else 0.0,
        min_diversity=min((a.diversity for a in agents), default=0.0),
        dominant_bin=max((a.dominant_bin for a in agents), default=0.0),
        trade_frequency=summary.trades / settled if settled else 0.0,
        profitable_agents=sum(a.profitable for a in agents),
        agents=len(agents),
    )
    return GateTable(
        run_id=state.run_id, steps=summary.steps, fleet=fleet, agents=tuple(agents), summary=summary
    )


def check_gates(table: GateTable, limits: GateLimits | None = None) -> list[GateResult]:
    """The hard gates of a trained fleet, each with its measured value."""
    fleet = table.fleet
    worst = max(table.agents, key=lambda a: a.dominant_bin, default=None)
    return hard_gates(
        dominant_bin=fleet.dominant_bin,
        diversity=fleet.diversity,
        trade_frequency=fleet.trade_frequency,
        limits=limits,
        worst=worst.symbol if worst else None,
    )


def hard_gates(
    *,
    dominant_bin: float,
    diversity: float,
    trade_frequency: float,
    limits: GateLimits | None = None,
    worst: str | None = None,
) -> list[GateResult]:
    """The hard gates on a fleet's largest agent dominant-bin share, its mean action
    diversity and its trade frequency (``worst``: the agent with that dominance)."""
    limits = limits or GateLimits()
    low, high = limits.trade_frequency
    return [
        GateResult(
            f"no agent's dominant-bin share above {limits.max_dominance:.2f}"
            + (f" (worst: {worst})" if worst else ""),
            dominant_bin,
            f"<= {limits.max_dominance:.2f}",
            dominant_bin <= limits.max_dominance,
        ),
        GateResult(
            "fleet action diversity (mean over agents)",
            diversity,
            f"> {limits.min_diversity:.2f}",
            diversity > limits.min_diversity,
        ),
        GateResult(
            "fleet trade frequency",
            trade_frequency,
            f"in [{low:.2f}, {high:.2f}]",
            low <= trade_frequency <= high,
        ),
    ]


def percentiles(
    agents: Sequence[AgentGates], field: str, qs: Sequence[float] = (0.0, 0.5, 1.0)
) -> list[float]:
    """Quantiles (min, median, max by default) of one per-agent measure."""
    values = np.array([float(getattr(a, field)) for a in agents])
    if values.size == 0:
        return [0.0 for _ in qs]
    return [float(v) for v in np.quantile(values, qs)]
