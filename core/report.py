"""A run's summary, computed as a fold of its ``portfolio.events``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy.typing as npt

from core.annualisation import Annualisation, annualisation
from core.events import (
    AccountMarked,
    DecisionRecorded,
    Event,
    OrderFilled,
    OrderSkipped,
    PortfolioOpened,
)
from core.ledger import PortfolioState, evolve
from core.performance import (
    buy_and_hold_equity,
    max_drawdown,
    sharpe_ratio,
    step_returns,
    total_return,
    win_rate,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionMix:
    """How often an agent bought, sold and held."""

    buy: int = 0
    sell: int = 0
    hold: int = 0

    @property
    def total(self) -> int:
        """Number of actions."""
        return self.buy + self.sell + self.hold

    def shares(self) -> tuple[float, float, float]:
        """(buy, sell, hold) as shares of all actions."""
        n = self.total or 1
        return self.buy / n, self.sell / n, self.hold / n


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """What a user checks after a run."""

    run_id: str
    symbols: int
    steps: int
    bars: int
    actions: int
    trades: int
    buys: int
    sells: int
    skipped: dict[str, int]
    clipped: dict[str, int]
    fees: float
    initial_equity: float
    final_equity: float
    total_return: float
    max_drawdown: float
    sharpe: float
    """Annualised with ``annualisation.periods_per_year``."""
    annualisation: Annualisation
    win_rate: float
    closed_trades: int
    complete: bool
    action_mix: dict[str, ActionMix] = field(default_factory=dict)


def summarize(events: Iterable[Event], periods_per_year: int | None = None) -> RunSummary:
    """Fold one run's portfolio events into its summary.

    The Sharpe ratio is annualised with ``periods_per_year`` when given, else
    with the periods per year derived from the times of the run's marks, the
    bars' own times (``core.annualisation``).
    """
    state = PortfolioState()
    equity: list[float] = []
    marked_at: list[int] = []
    skipped: Counter[str] = Counter()
    clipped: Counter[str] = Counter()
    mix: dict[str, Counter[str]] = {}
    bars = steps = buys = sells = 0
    for event in events:
        state = evolve(state, event)
        if isinstance(event, PortfolioOpened):
            equity = [event.initial_cash]
            mix = {s: Counter() for s in event.symbols}
        elif isinstance(event, AccountMarked):
            equity.append(event.equity)
            marked_at.append(event.event_time)
            bars += event.bars
            steps += 1
        elif isinstance(event, DecisionRecorded):
            mix[event.symbol][event.kind] += 1
        elif isinstance(event, OrderFilled):
            buys += event.side == "buy"
            sells += event.side == "sell"
            clipped.update(event.clipped_by)
        elif isinstance(event, OrderSkipped):
            skipped[event.reason] += 1
    initial = state.initial_cash
    final = equity[-1] if equity else initial
    yearly = annualisation(marked_at, periods_per_year)
    return RunSummary(
        run_id=state.run_id,
        symbols=len(state.symbols),
        steps=steps,
        bars=bars,
        actions=sum(sum(c.values()) for c in mix.values()),
        trades=state.fills,
        buys=buys,
        sells=sells,
        skipped=dict(sorted(skipped.items())),
        clipped=dict(sorted(clipped.items())),
        fees=state.fees,
        initial_equity=initial,
        final_equity=final,
        total_return=total_return(initial, final) if initial else 0.0,
        max_drawdown=max_drawdown(equity),
        sharpe=sharpe_ratio(step_returns(equity), yearly.periods_per_year),
        annualisation=yearly,
        win_rate=win_rate(state.winning_trades, state.closed_trades),
        closed_trades=state.closed_trades,
        complete=state.closed,
        action_mix={
            s: ActionMix(buy=c["buy"], sell=c["sell"], hold=c["hold"]) for s, c in mix.items()
        },
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Benchmark:
    """A reference curve on the same bars as a run, with the run's measures."""

    label: str
    total_return: float
    max_drawdown: float
    sharpe: float
    """Annualised as the run's Sharpe is."""
    equity: tuple[float, ...]
    """One point per step, the first at the initial cash."""


def buy_and_hold(close: npt.ArrayLike, initial: float, yearly: Annualisation) -> Benchmark:
    """Equal-weight buy-and-hold of the run's symbols at the first step's close, no fees."""
    curve = buy_and_hold_equity(close, initial)
    return Benchmark(
        label="buy-and-hold (equal weight at the first close, no fees)",
        total_return=total_return(initial, float(curve[-1])),
        max_drawdown=max_drawdown(curve),
        sharpe=sharpe_ratio(step_returns(curve), yearly.periods_per_year),
        equity=tuple(float(x) for x in curve),
    )
