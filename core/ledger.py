"""The portfolio ledger: ``evolve(state, event) -> state`` and its fold.

Portfolio state is never stored, only derived: ``fold(events)`` over the
``portfolio.events`` log gives it back, which is how the portfolio manager
rebuilds itself on start and how reports are computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from core.events import (
    AccountMarked,
    ActionLate,
    DecisionMissed,
    DecisionRecorded,
    Event,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
)
from core.frozen import replace


class LedgerError(ValueError):
    """An event that cannot apply to the current state (the log is inconsistent)."""


@dataclass(frozen=True, slots=True)
class Position:
    """Quantity held and its cost basis (fill prices plus buy fees)."""

    quantity: float
    cost: float

    @property
    def avg_cost(self) -> float:
        """Cost per share, fees included."""
        return self.cost / self.quantity if self.quantity > 0 else 0.0


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """A decided buy or sell that fills at the next bar's open."""

    target: float
    decision_id: str
    step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioState:
    """Everything the ledger knows, derived from its events."""

    run_id: str = ""
    portfolio_id: str = ""
    symbols: tuple[str, ...] = ()
    initial_cash: float = 0.0
    cash: float = 0.0
    positions: Mapping[str, Position] = field(default_factory=lambda: MappingProxyType({}))
    pending: Mapping[str, PendingOrder] = field(default_factory=lambda: MappingProxyType({}))
    marked_step: int = -1
    marked_bars: int = 0
    decided_step: int = -1
    equity: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    fills: int = 0
    closed_trades: int = 0
    winning_trades: int = 0
    opened: bool = False
    closed: bool = False

    def quantity(self, symbol: str) -> float:
        """Quantity held of ``symbol`` (0 when none)."""
        position = self.positions.get(symbol)
        return position.quantity if position else 0.0


def _with(mapping: Mapping[str, object], key: str, value: object | None) -> MappingProxyType:
    updated = dict(mapping)
    if value is None:
        updated.pop(key, None)
    else:
        updated[key] = value
    return MappingProxyType(updated)


def evolve(state: PortfolioState, event: Event) -> PortfolioState:
    """Apply one portfolio event to the state and return the new state."""
    if isinstance(event, PortfolioOpened):
        if state.opened:
            raise LedgerError(f"{event.event_id}: portfolio {state.portfolio_id} already opened")
        return PortfolioState(
            run_id=event.run_id,
            portfolio_id=event.portfolio_id,
            symbols=event.symbols,
            initial_cash=event.initial_cash,
            cash=event.initial_cash,
            equity=event.initial_cash,
            opened=True,
        )
    if not state.opened:
        raise LedgerError(f"{event.event_id}: event before the portfolio was opened")
    if isinstance(event, DecisionRecorded):
        if event.symbol not in state.symbols:
            raise LedgerError(f"{event.event_id}: {event.symbol} is not in the portfolio")
        pending = state.pending
        if event.kind != "hold":
            order = PendingOrder(event.smoothed, event.event_id, event.step)
            pending = _with(state.pending, event.symbol, order)
        return replace(
            state,
            pending=pending,
            decided_step=max(state.decided_step, event.step),
        )
    if isinstance(event, DecisionMissed):
        if event.symbol not in state.symbols:
            raise LedgerError(f"{event.event_id}: {event.symbol} is not in the portfolio")
        return replace(state, decided_step=max(state.decided_step, event.step))
    if isinstance(event, ActionLate):
        return state
    if isinstance(event, OrderFilled):
        return _apply_fill(state, event)
    if isinstance(event, OrderSkipped):
        return replace(state, pending=_with(state.pending, event.symbol, None))
    if isinstance(event, AccountMarked):
        return replace(state, marked_step=event.step, marked_bars=event.bars, equity=event.equity)
    if isinstance(event, PortfolioClosed):
        return replace(state, closed=True, equity=event.final_equity)
    raise LedgerError(f"{event.event_id}: {type(event).__name__} is not a portfolio event")


def _apply_fill(state: PortfolioState, fill: OrderFilled) -> PortfolioState:
    held = state.positions.get(fill.symbol, Position(0.0, 0.0))
    if fill.side == "buy":
        position = Position(held.quantity + fill.quantity, held.cost + fill.notional + fill.fee)
        return replace(
            state,
            cash=state.cash - fill.notional - fill.fee,
            positions=_with(state.positions, fill.symbol, position),
            pending=_with(state.pending, fill.symbol, None),
            fees=state.fees + fill.fee,
            fills=state.fills + 1,
        )
    if fill.side != "sell":
        raise LedgerError(f"{fill.event_id}: side {fill.side!r} is neither buy nor sell")
    if fill.quantity > held.quantity * (1 + 1e-12):
        raise LedgerError(
            f"{fill.event_id}: sells {fill.quantity} {fill.symbol} but holds {held.quantity}"
        )
    quantity = min(fill.quantity, held.quantity)
    cost_sold = held.avg_cost * quantity
    pnl = fill.notional - fill.fee - cost_sold
    remaining = held.quantity - quantity
    kept = Position(remaining, held.cost - cost_sold) if remaining > 0 else None
    return replace(
        state,
        cash=state.cash + fill.notional - fill.fee,
        positions=_with(state.positions, fill.symbol, kept),
        pending=_with(state.pending, fill.symbol, None),
        realized_pnl=state.realized_pnl + pnl,
        fees=state.fees + fill.fee,
        fills=state.fills + 1,
        closed_trades=state.closed_trades + 1,
        winning_trades=state.winning_trades + (1 if pnl > 0 else 0),
    )


def fold(events: Iterable[Event], state: PortfolioState | None = None) -> PortfolioState:
    """Fold events into a state, starting from ``state`` or an empty one."""
    current = state if state is not None else PortfolioState()
    for event in events:
        current = evolve(current, event)
    return current
