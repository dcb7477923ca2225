"""Events to rows: the pure half of the projection (no I/O).

Each projected event gives rows of the tables of ``schema/0001_tables.sql``,
keyed by its own id; the runs table takes column patches that merge. Events
the projection does not keep (``ServiceReady``, ``StepCompleted``, models)
give nothing. One agent serves one symbol, so a row's ``agent`` is its
symbol (as the collapse detector's ``agent`` label is).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from core.events import (
    AccountMarked,
    ActionDecided,
    BarClosed,
    CollapseDetected,
    CollapseResolved,
    DecisionRecorded,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
    ReplayFinished,
    ReplayStarted,
)
from streams.topics import AGENT_ACTIONS, MARKET_BARS, MONITOR_ALERTS, PORTFOLIO_EVENTS, SIM_CLOCK

TOPICS: tuple[str, ...] = (
    SIM_CLOCK.name,
    MARKET_BARS.name,
    AGENT_ACTIONS.name,
    PORTFOLIO_EVENTS.name,
    MONITOR_ALERTS.name,
)
"""The topics projected: runs (sim.clock), bars, actions, the ledger and the collapse alerts."""
Row = tuple[object, ...]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Table:
    """A projected table: its columns, their PostgreSQL types (for binary COPY), its key."""

    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]


def _table(name: str, key: tuple[str, ...], *columns: str) -> Table:
    names = tuple(c.split(":")[0] for c in columns)
    types = tuple(c.split(":")[1] for c in columns)
    return Table(name, names, types, key)


BARS = _table(
    "bars",
    ("event_id", "event_time"),
    "event_id:text", "run_id:text", "symbol:text", "step:int4", "event_time:timestamptz",
    "open:float8", "high:float8", "low:float8", "close:float8", "volume:float8",
)  # fmt: skip
ACTIONS = _table(
    "actions",
    ("event_id", "event_time"),
    "event_id:text", "cause_id:text", "run_id:text", "agent:text", "symbol:text", "step:int4",
    "event_time:timestamptz", "action_raw:float8", "action_smoothed:float8", "policy:text",
    "policy_version:text",
)  # fmt: skip
DECISIONS = _table(
    "decisions",
    ("event_id", "event_time"),
    "event_id:text", "cause_id:text", "run_id:text", "agent:text", "symbol:text", "step:int4",
    "event_time:timestamptz", "action_raw:float8", "action_smoothed:float8", "kind:text",
    "policy:text", "policy_version:text",
)  # fmt: skip
FILLS = _table(
    "fills",
    ("event_id", "event_time"),
    "event_id:text", "cause_id:text", "run_id:text", "agent:text", "symbol:text", "step:int4",
    "event_time:timestamptz", "side:text", "quantity:float8", "price:float8", "notional:float8",
    "fee:float8", "requested_quantity:float8", "clipped_by:text[]",
)  # fmt: skip
SKIPS = _table(
    "skips",
    ("event_id", "event_time"),
    "event_id:text", "cause_id:text", "run_id:text", "agent:text", "symbol:text", "step:int4",
    "event_time:timestamptz", "side:text", "reason:text", "requested_quantity:float8",
)  # fmt: skip
MARKS = _table(
    "marks",
    ("event_id", "event_time"),
    "event_id:text", "cause_id:text", "run_id:text", "step:int4", "event_time:timestamptz",
    "bars:int4", "cash:float8", "equity:float8",
)  # fmt: skip
HOLDINGS = _table(
    "holdings",
    ("mark_id", "symbol", "event_time"),
    "mark_id:text", "run_id:text", "agent:text", "symbol:text", "step:int4",
    "event_time:timestamptz", "quantity:float8", "cost:float8", "avg_cost:float8",
    "close:float8", "market_value:float8", "unrealized_pnl:float8",
)  # fmt: skip
ALERTS = _table(
    "collapse_alerts",
    ("event_id",),
    "event_id:text", "cause_id:text", "run_id:text", "agent:text", "event_time:timestamptz",
    "state:text", "metric:text", "severity:text", "value:float8", "threshold:float8",
    "action_window:text", "actions:int4",
)  # fmt: skip

TABLES: tuple[Table, ...] = (BARS, ACTIONS, DECISIONS, FILLS, SKIPS, MARKS, HOLDINGS, ALERTS)
"""The tables written by COPY, in the order a batch writes them (decisions before fills)."""
RUN_COLUMNS: tuple[str, ...] = (
    "dataset", "mode", "symbols", "steps_total", "started_at", "portfolio_id", "initial_cash",
    "replayed_steps", "closed_at", "steps", "final_equity",
)  # fmt: skip
"""The columns of ``runs`` besides ``run_id``, each set by one kind of event."""
DERIVED: tuple[str, ...] = ("runs", "run_models", "rl_trades")
"""Tables the store derives in SQL from the others (upserts, joins)."""


@lru_cache(maxsize=8192)
def timestamp(ns: int) -> datetime:
    """The UTC time of integer nanoseconds since the epoch (microsecond precision)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


@dataclass(slots=True)
class Batch:
    """Rows of a batch of events, by table, and the runs' merged column patches."""

    rows: dict[str, list[Row]] = field(default_factory=lambda: {t.name: [] for t in TABLES})
    runs: dict[str, dict[str, object]] = field(default_factory=dict)
    events: int = 0
    """Events that gave rows."""

    def __len__(self) -> int:
        return sum(len(r) for r in self.rows.values()) + len(self.runs)

    def add(self, event: object) -> bool:
        """Add the rows of ``event``; False when the projection does not keep it."""
        kept = _add(self, event)
        self.events += kept
        return kept

    def patch_run(self, run_id: str, **columns: object) -> None:
        """Merge column values into the run's patch."""
        self.runs.setdefault(run_id, {}).update(columns)


def project(events: Iterable[object]) -> Batch:
    """The batch of rows of ``events``."""
    batch = Batch()
    for event in events:
        batch.add(event)
    return batch


def _add(batch: Batch, e: object) -> bool:
    rows = batch.rows
    if isinstance(e, BarClosed):
        rows["bars"].append(
            (e.event_id, e.run_id, e.symbol, e.step, timestamp(e.event_time),
             e.open, e.high, e.low, e.close, e.volume)
        )  # fmt: skip
    elif isinstance(e, ActionDecided):
        rows["actions"].append(
            (e.event_id, e.cause_id, e.run_id, e.symbol, e.symbol, e.step,
             timestamp(e.event_time), e.raw, e.smoothed, e.policy, e.policy_version)
        )  # fmt: skip
    elif isinstance(e, DecisionRecorded):
        rows["decisions"].append(
            (e.event_id, e.cause_id, e.run_id, e.symbol, e.symbol, e.step,
             timestamp(e.event_time), e.raw, e.smoothed, e.kind, e.policy, e.policy_version)
        )  # fmt: skip
    elif isinstance(e, OrderFilled):
        rows["fills"].append(
            (e.event_id, e.cause_id, e.run_id, e.symbol, e.symbol, e.step,
             timestamp(e.event_time), e.side, e.quantity, e.price, e.notional, e.fee,
             e.requested_quantity, list(e.clipped_by))
        )  # fmt: skip
    elif isinstance(e, OrderSkipped):
        rows["skips"].append(
            (e.event_id, e.cause_id, e.run_id, e.symbol, e.symbol, e.step,
             timestamp(e.event_time), e.side, e.reason, e.requested_quantity)
        )  # fmt: skip
    elif isinstance(e, AccountMarked):
        at = timestamp(e.event_time)
        rows["marks"].append(
            (e.event_id, e.cause_id, e.run_id, e.step, at, e.bars, e.cash, e.equity)
        )
        rows["holdings"].extend(
            (e.event_id, e.run_id, h.symbol, h.symbol, e.step, at, h.quantity, h.cost,
             h.avg_cost, h.close, h.quantity * h.close, h.unrealized_pnl)
            for h in e.holdings
        )  # fmt: skip
    elif isinstance(e, CollapseDetected | CollapseResolved):
        state = "detected" if isinstance(e, CollapseDetected) else "resolved"
        rows["collapse_alerts"].append(
            (e.event_id, e.cause_id, e.run_id, e.agent, timestamp(e.event_time), state,
             e.metric, e.severity, e.value, e.threshold, e.window, e.actions)
        )  # fmt: skip
    elif isinstance(e, ReplayStarted):
        batch.patch_run(
            e.run_id,
            dataset=e.dataset,
            mode=e.mode,
            symbols=list(e.symbols),
            steps_total=e.steps_total,
            started_at=timestamp(e.event_time),
        )
    elif isinstance(e, PortfolioOpened):
        batch.patch_run(e.run_id, portfolio_id=e.portfolio_id, initial_cash=e.initial_cash)
    elif isinstance(e, ReplayFinished):
        batch.patch_run(e.run_id, replayed_steps=e.steps)
    elif isinstance(e, PortfolioClosed):
        batch.patch_run(
            e.run_id, closed_at=timestamp(e.event_time), steps=e.steps, final_equity=e.final_equity
        )
    else:
        return False
    return True
