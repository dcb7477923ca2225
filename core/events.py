"""Domain events: immutable, past-tense records that carry their cause.

Every event has an ``event_id``, the ``cause_id`` of the event or command that
caused it, the ``run_id`` and the ``event_time`` of the bar it belongs to (UTC
integer nanoseconds). Ids are derived from the run, the step and the symbol,
so the same run replayed twice gives the same ids (and a byte-identical log).
Wire names and schema versions live in ``streams.codec``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event carries."""

    event_id: str
    cause_id: str
    run_id: str
    event_time: int


# --- market.bars -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BarClosed(Event):
    """One closed OHLCV bar of a symbol at replay step ``step``.

    ``step_bars`` is the number of bars of this step, so a consumer knows when
    it has them all whatever partitions they came through.
    """

    symbol: str
    step: int
    steps_total: int
    step_bars: int
    open: float
    high: float
    low: float
    close: float
    volume: float


# --- sim.clock -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayStarted(Event):
    """A replay run begins: its symbols, number of steps and data source."""

    symbols: tuple[str, ...]
    steps_total: int
    dataset: str
    mode: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceReady(Event):
    """A service of the run is subscribed and ready for the first step."""

    service: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepCompleted(Event):
    """The portfolio manager has processed every bar and action of ``step``."""

    step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayFinished(Event):
    """The replay emitted its last step."""

    steps: int


# --- agent.actions ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionDecided(Event):
    """An agent's action on a symbol's bar: raw policy output and its smoothing."""

    symbol: str
    step: int
    raw: float
    smoothed: float
    policy: str
    policy_version: str


# --- portfolio.events ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioOpened(Event):
    """A portfolio starts with ``initial_cash`` over ``symbols``."""

    portfolio_id: str
    initial_cash: float
    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRecorded(Event):
    """An agent action accepted by the portfolio manager for the next step.

    ``kind`` is ``buy``, ``sell`` or ``hold``; buys and sells become pending
    orders that fill at the next bar's open.
    """

    symbol: str
    step: int
    raw: float
    smoothed: float
    kind: str
    policy: str
    policy_version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionMissed(Event):
    """A paced run's deadline passed without an action for ``symbol`` at ``step``.

    The deadline of a step's actions is the next step's bars (or the end of
    the replay): the portfolio manager decides the step with the actions it
    has, and a symbol without one holds (no order). ``cause_id`` is the id of
    the symbol's bar.
    """

    symbol: str
    step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionLate(Event):
    """An action that arrived after its step was decided without it (a paced run).

    It changes nothing (its decision was recorded missed); ``cause_id`` is
    the action's id, and ``raw`` and ``smoothed`` what it would have done.
    """

    symbol: str
    step: int
    raw: float
    smoothed: float
    policy: str
    policy_version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled(Event):
    """A pending order filled at the bar's open (with slippage) and paid a fee.

    ``clipped_by`` names the gates that made it smaller than requested.
    """

    symbol: str
    step: int
    side: str
    quantity: float
    price: float
    notional: float
    fee: float
    requested_quantity: float
    clipped_by: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSkipped(Event):
    """A pending order that did not fill, with the gate that stopped it."""

    symbol: str
    step: int
    side: str
    reason: str
    requested_quantity: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """One symbol's position in an account snapshot."""

    symbol: str
    quantity: float
    cost: float
    avg_cost: float
    close: float
    unrealized_pnl: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountMarked(Event):
    """The step's account snapshot, marked at the bars' close."""

    step: int
    bars: int
    cash: float
    equity: float
    holdings: tuple[Holding, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioClosed(Event):
    """The run ended: the last step and the final equity."""

    steps: int
    final_equity: float


# --- agent.models -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPublished(Event):
    """The model the agents of ``agent_id`` serve from now on.

    ``checkpoint`` empty means the built-in baseline policy. ``previous_*``
    name the model it replaces, so a rollback is one more event.
    """

    agent_id: str
    checkpoint: str
    version: str
    previous_checkpoint: str
    previous_version: str
    reason: str


# --- monitor.alerts ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CollapseDetected(Event):
    """An agent's action statistics crossed a collapse threshold."""

    agent: str
    metric: str
    severity: str
    value: float
    threshold: float
    window: str
    actions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CollapseResolved(Event):
    """An open collapse alert cleared: the statistic is back on the safe side."""

    agent: str
    metric: str
    severity: str
    value: float
    threshold: float
    window: str
    actions: int


def service_ready(run_id: str, service: str) -> ServiceReady:
    """The announcement that ``service`` of the run listens (one id per service and run)."""
    return ServiceReady(
        event_id=f"{run_id}/ready/{service}",
        cause_id=run_id,
        run_id=run_id,
        event_time=0,
        service=service,
    )


def event_id(run_id: str, step: int, kind: str, symbol: str = "") -> str:
    """Deterministic id of the event of ``kind`` for ``symbol`` at ``step`` of a run."""
    return f"{run_id}/{step}/{kind}/{symbol}" if symbol else f"{run_id}/{step}/{kind}"
