"""A run's summary, computed as a fold of its ``portfolio.events``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.events import (
    AccountMarked,
    DecisionRecorded,
    Event,
    OrderFilled,
    OrderSkipped,
    PortfolioOpened,
)
from core.ledger import PortfolioState, evolve
from core.performance import max_drawdown, sharpe_ratio, step_returns, total_return, win_rate


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
    win_rate: float
    closed_trades: int
    complete: bool
    action_mix: dict[str, ActionMix] = field(default_factory=dict)


def summarize(events: Iterable[Event], periods_per_year: int = 252) -> RunSummary:
    """Fold one run's portfolio events into its summary."""
    state = PortfolioState()
    equity: list[float] = []
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
        sharpe=sharpe_ratio(step_returns(equity), periods_per_year),
        win_rate=win_rate(state.winning_trades, state.closed_trades),
        closed_trades=state.closed_trades,
        complete=state.closed,
        action_mix={
            s: ActionMix(buy=c["buy"], sell=c["sell"], hold=c["hold"]) for s, c in mix.items()
        },
    )
