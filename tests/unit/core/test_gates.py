"""The gate table: per-agent and fleet measures folded from a run's ledger events."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.collapse import ActionWindow
from core.events import ActionDecided, Event, OrderFilled
from core.gates import GateLimits, check_gates, gate_table
from core.ledger import fold
from core.portfolio import close_run, fill_pending, mark, open_portfolio, record_decisions
from core.rules import TradingRules

RULES = TradingRules()
SYMBOLS = ("AAA", "BBB", "CCC")


def run_events(closes: np.ndarray, actions: np.ndarray, run_id: str = "gates") -> list[Event]:
    """A run through the core rules: each step fills at the open (= previous close), marks,
    then records the scripted raw actions (used unsmoothed) of every symbol."""
    opened = open_portfolio(
        run_id=run_id, portfolio_id="main", symbols=SYMBOLS, rules=RULES,
        cause_id="start", event_time=0,
    )  # fmt: skip
    events: list[Event] = [opened]
    state = fold(events)
    last = np.full(len(SYMBOLS), np.nan)
    for step in range(len(closes)):
        opens = closes[step - 1] if step else closes[0]
        new = fill_pending(
            state, step=step, event_time=step, open_px=opens, last_close=last, rules=RULES
        )
        state = fold(new, state)
        last = closes[step].copy()
        marked = mark(state, step=step, event_time=step, last_close=last, bars=3, cause_id="b")
        state = fold([marked], state)
        decided = [
            ActionDecided(
                event_id=f"{run_id}/{step}/{s}", cause_id="bar", run_id=run_id, event_time=step,
                symbol=s, step=step, raw=float(a), smoothed=float(a), policy="script",
                policy_version="1",
            )
            for s, a in zip(SYMBOLS, actions[step], strict=True)
        ]  # fmt: skip
        recorded = record_decisions(state, step=step, event_time=step, actions=decided, rules=RULES)
        state = fold(recorded, state)
        events += [*new, marked, *recorded]
    end = close_run(state, step=len(closes) - 1, event_time=len(closes), cause_id="end")
    return events + end


def scripted(steps: int = 60, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (steps, 3)), axis=0))
    actions = np.column_stack([
        rng.uniform(-1.0, 1.0, steps),  # AAA: diverse, trades often
        np.full(steps, 0.25),  # BBB: the collapsed always-BUY_SMALL agent
        np.zeros(steps),  # CCC: never trades
    ])  # fmt: skip
    return closes, actions


def test_agent_pnl_adds_up_to_the_portfolio_result() -> None:
    events = run_events(*scripted())
    table = gate_table(events)
    total = sum(a.pnl for a in table.agents)
    assert total == pytest.approx(table.summary.final_equity - table.summary.initial_equity)
    assert table.agents[2].pnl == 0.0 and not table.agents[2].profitable
    assert table.fleet.profitable_agents == sum(a.pnl > 0 for a in table.agents)


def test_trades_and_win_rate_follow_the_ledger() -> None:
    events = run_events(*scripted())
    table = gate_table(events)
    fills = [e for e in events if isinstance(e, OrderFilled)]
    for agent in table.agents:
        mine = [f for f in fills if f.symbol == agent.symbol]
        assert agent.trades == len(mine)
        assert agent.trades_per_day == pytest.approx(len(mine) / table.steps)
        assert agent.closed_trades == sum(f.side == "sell" for f in mine)
    assert sum(a.trades for a in table.agents) == table.fleet.trades == table.summary.trades
    wins = sum(round(a.win_rate * a.closed_trades) for a in table.agents)
    assert wins / table.summary.closed_trades == pytest.approx(table.summary.win_rate)


def test_action_statistics_are_the_collapse_rule() -> None:
    closes, actions = scripted()
    table = gate_table(run_events(closes, actions))
    diverse, collapsed, idle = table.agents
    window = ActionWindow(size=1000)
    for step, raw in enumerate(actions[:, 0]):
        window.add(raw=float(raw), kind=0, step=step)
    assert diverse.diversity == pytest.approx(window.stats().diversity)
    assert diverse.actions == len(actions)
    assert collapsed.dominant_bin == 1.0 and collapsed.diversity == 0.0
    assert idle.trade_frequency == 0.0
    assert 0.0 < diverse.trade_frequency <= 1.0
    # After the close every action is settled: the frequency is fills per action.
    for agent in table.agents:
        assert agent.trade_frequency == pytest.approx(agent.trades / agent.actions)
    assert table.fleet.dominant_bin == 1.0
    assert table.fleet.diversity == pytest.approx(np.mean([a.diversity for a in table.agents]))


def test_contribution_drawdown_and_sharpe_are_finite() -> None:
    table = gate_table(run_events(*scripted()))
    for agent in table.agents:
        assert math.isfinite(agent.sharpe) and 0.0 <= agent.max_drawdown < 1.0
    assert table.agents[2].max_drawdown == 0.0 and table.agents[2].sharpe == 0.0


def test_the_hard_gates_catch_a_collapsed_agent() -> None:
    table = gate_table(run_events(*scripted()))
    gates = {g.gate.split(" (")[0]: g for g in check_gates(table)}
    dominance = gates["no agent's dominant-bin share above 0.60"]
    assert not dominance.passed and "BBB" in next(g.gate for g in check_gates(table))
    assert dominance.value == 1.0


def test_a_diverse_fleet_passes_the_hard_gates() -> None:
    rng = np.random.default_rng(5)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (80, 3)), axis=0))
    # Diverse actions, mostly in the hold zone, so that a minority of them trades.
    actions = rng.uniform(-1.0, 1.0, (80, 3)) * np.where(rng.random((80, 3)) < 0.5, 0.1, 1.0)
    table = gate_table(run_events(closes, actions))
    results = check_gates(table)
    assert all(g.passed for g in results), results
    strict = check_gates(table, GateLimits(min_diversity=0.99))
    assert [g.passed for g in strict] == [True, False, True]


def test_events_of_no_run_are_refused() -> None:
    with pytest.raises(ValueError, match="PortfolioOpened"):
        gate_table([])


def test_an_agent_losing_more_than_its_equal_share_still_has_measures() -> None:
    # One agent buys with all the cash, then the price collapses: it loses far more than
    # initial_cash / n. Its drawdown is measured on the book's cash, not refused.
    steps = 12
    closes = np.full((steps, 3), 100.0)
    closes[6:, 0] = 10.0
    actions = np.zeros((steps, 3))
    actions[0, 0] = 1.0
    table = gate_table(run_events(closes, actions))
    loser = table.agents[0]
    assert loser.pnl < -RULES.initial_cash / 3 * 0.3
    assert loser.max_drawdown == pytest.approx(-loser.pnl / RULES.initial_cash, rel=0.05)
    assert loser.sharpe < 0.0
