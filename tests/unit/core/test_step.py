"""The step aggregate: validation, redelivery, restart at any point, parity with the kernels,
and paced runs (deadlines, missed decisions, late actions)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from core.actions import SmoothingState, smooth
from core.bars import BarFrame
from core.events import (
    AccountMarked,
    ActionDecided,
    ActionLate,
    BarClosed,
    DecisionMissed,
    DecisionRecorded,
    Event,
    OrderFilled,
    PortfolioClosed,
    ReplayFinished,
    ReplayStarted,
    StepCompleted,
    event_id,
)
from core.ledger import fold as fold_ledger
from core.rules import TradingRules
from core.step import (
    PACED,
    Input,
    InputRejected,
    StepState,
    decide,
    evolve,
    fold,
    is_input,
    restore,
)
from rl_agents.envs.config import EnvConfig
from rl_agents.envs.engine import MarketEngine

RUN = "unit"
RULES = TradingRules()


def make_frame(n_symbols: int = 6, n_steps: int = 30, seed: int = 3) -> BarFrame:
    """A seeded random walk of bars (every symbol has a bar at every step)."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_steps, n_symbols)), axis=0))
    open_px = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(open_px, close) * 1.01
    low = np.minimum(open_px, close) * 0.99
    return BarFrame(
        symbols=tuple(f"S{i}" for i in range(n_symbols)),
        timestamps=np.arange(n_steps, dtype=np.int64) * 86_400_000_000_000 + 1,
        open=open_px,
        high=high,
        low=low,
        close=close,
        volume=np.full(close.shape, 1e5),
        present=np.ones(close.shape, dtype=np.bool_),
        source="unit",
    )


FRAME = make_frame()


def started_event(frame: BarFrame = FRAME) -> ReplayStarted:
    return ReplayStarted(
        event_id=event_id(RUN, -1, "replay-started"),
        cause_id=RUN,
        run_id=RUN,
        event_time=int(frame.timestamps[0]),
        symbols=frame.symbols,
        steps_total=frame.n_steps,
        dataset="unit",
        mode="lockstep",
    )


def bar(frame: BarFrame, t: int, j: int, **changes: object) -> BarClosed:
    made = BarClosed(
        event_id=event_id(RUN, t, "bar", frame.symbols[j]),
        cause_id=RUN,
        run_id=RUN,
        event_time=int(frame.timestamps[t]),
        symbol=frame.symbols[j],
        step=t,
        steps_total=frame.n_steps,
        step_bars=frame.n_symbols,
        open=float(frame.open[t, j]),
        high=float(frame.high[t, j]),
        low=float(frame.low[t, j]),
        close=float(frame.close[t, j]),
        volume=float(frame.volume[t, j]),
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def action(frame: BarFrame, step: int, j: int, raw: float, smoothed: float) -> ActionDecided:
    symbol = frame.symbols[j]
    return ActionDecided(
        event_id=event_id(RUN, step, "action", symbol),
        cause_id=event_id(RUN, step, "bar", symbol),
        run_id=RUN,
        event_time=int(frame.timestamps[step]),
        symbol=symbol,
        step=step,
        raw=raw,
        smoothed=smoothed,
        policy="unit",
        policy_version="1",
    )


def raw_actions(frame: BarFrame, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (frame.n_steps, frame.n_symbols))


def inputs(
    frame: BarFrame = FRAME, seed: int = 7
) -> Iterator[ReplayStarted | BarClosed | ActionDecided]:
    """The inputs of a lockstep run in the order the services produce them."""
    raws = raw_actions(frame, seed)
    smoothing = SmoothingState.empty(frame.n_symbols, RULES.smoothing_window)
    yield started_event(frame)
    for t in range(frame.n_steps):
        for j in range(frame.n_symbols):
            yield bar(frame, t, j)
        smoothing, smoothed = smooth(smoothing, raws[t])
        for j in range(frame.n_symbols):
            yield action(frame, t, j, float(raws[t, j]), float(smoothed[j]))


def empty() -> StepState:
    return StepState(run_id=RUN, portfolio_id="main", rules=RULES)


def run(items: Sequence[Input], state: StepState | None = None) -> tuple[StepState, list[Event]]:
    """Feed inputs through decide/evolve; return the state and the published events."""
    state = state or empty()
    out: list[Event] = []
    for item in items:
        events = decide(state, item)
        state = fold(events, state)
        out.extend(e for e in events if not is_input(e))
    return state, out


def test_a_lockstep_run_closes_with_one_step_completed_per_step() -> None:
    state, out = run(list(inputs()))

    assert state.ledger.closed
    completed = [e.step for e in out if isinstance(e, StepCompleted)]
    assert completed == list(range(FRAME.n_steps))
    assert isinstance([e for e in out if not isinstance(e, StepCompleted)][-1], PortfolioClosed)
    assert not any(isinstance(e, InputRejected) for e in out)


def test_the_aggregate_trades_exactly_as_the_environment_kernels() -> None:
    """``core.simulation.advance`` (the numba engine) and ``core.step`` agree fill by fill."""
    _, out = run(list(inputs()))
    fills = [e for e in out if isinstance(e, OrderFilled)]
    marks = {e.step: e for e in out if isinstance(e, AccountMarked)}

    engine = MarketEngine(FRAME, EnvConfig())
    engine.reset(0, None)
    raws = raw_actions(FRAME)
    engine_fills = []
    for t in range(FRAME.n_steps - 1):
        engine.step(raws[t])
        for i in sorted(np.flatnonzero(engine.quantity), key=lambda i: engine.quantity[i] > 0):
            side = "buy" if engine.quantity[i] > 0 else "sell"
            engine_fills.append(
                (
                    t + 1,
                    FRAME.symbols[i],
                    side,
                    abs(engine.quantity[i]),
                    engine.price[i],
                    engine.fee[i],
                )
            )
        assert marks[t + 1].equity == pytest.approx(engine.equity, rel=1e-12)
        assert marks[t + 1].cash == pytest.approx(engine.cash, rel=1e-12)

    assert len(engine_fills) > 20
    assert [(f.step, f.symbol, f.side, f.quantity, f.price, f.fee) for f in fills] == engine_fills


def test_identical_redelivery_of_any_input_changes_nothing() -> None:
    items = list(inputs())
    _, clean = run(items)
    doubled = [x for item in items for x in (item, item)]

    _, out = run(doubled)

    assert out == clean


@pytest.mark.parametrize("cut", [1, 2, 7, 8, 13, 50, 97, 155, 200, 331])
def test_a_restart_at_any_point_continues_with_the_same_events(cut: int) -> None:
    """Rebuilt from its ledger, fed again every input from the start: the same events follow."""
    items = list(inputs())
    _, clean = run(items)
    before, published = run(items[:cut])
    ledger = [e for e in published if not isinstance(e, StepCompleted)]
    started = items[0] if before.ledger.opened else None
    assert isinstance(started, ReplayStarted | None)

    restored, rest = run(items, restore(empty(), started, ledger))

    rejected = [e for e in rest if isinstance(e, InputRejected)]
    assert all(e.reason.startswith("late") for e in rejected)
    assert published + [e for e in rest if not isinstance(e, InputRejected)] == clean
    assert restored.ledger.closed


def rejection(state: StepState, item: BarClosed | ActionDecided) -> str:
    (event,) = decide(state, item)
    assert isinstance(event, InputRejected)
    return event.reason


def at_step_one() -> StepState:
    """The state after step 0 is decided: step 1's bars are awaited."""
    items = list(inputs())
    state, _ = run(items[: 1 + 2 * FRAME.n_symbols])
    assert state.fill_step == 1
    return state


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"open": -1.0}, "open -1.0 is not a finite price"),
        ({"close": 0.0}, "close 0.0 is not a finite price"),
        ({"high": math.inf}, "high inf is not a finite price"),
        ({"low": math.nan}, "low nan is not a finite price"),
        ({"high": 1e308, "close": 1e308}, "is not a finite price"),
        ({"low": 1e6}, "prices are inconsistent"),
        ({"volume": -5.0}, "volume -5.0"),
        (
            {"symbol": "NOPE", "event_id": event_id(RUN, 1, "bar", "NOPE")},
            "not in the run's universe",
        ),
        ({"step": 10_000, "event_id": event_id(RUN, 10_000, "bar", "S0")}, "outside the run"),
        ({"step": -3, "event_id": event_id(RUN, -3, "bar", "S0")}, "outside the run"),
        ({"steps_total": 99}, "steps_total 99 differs"),
        ({"step_bars": 0}, "step_bars 0"),
        ({"event_id": "forged"}, "is not the id of this bar"),
    ],
)
def test_impossible_bars_are_rejected_with_the_reason(
    changes: dict[str, object], words: str
) -> None:
    assert words in rejection(at_step_one(), bar(FRAME, 1, 0, **changes))


def test_bars_of_a_future_or_decided_step_are_rejected() -> None:
    state = at_step_one()
    future = bar(FRAME, 5, 0)
    decided = bar(FRAME, 0, 0, close=float(FRAME.close[0, 0]) * 1.5, high=1e4)

    assert "step 5 is not open" in rejection(state, future)
    assert "conflicts with the bar of S0 at step 0" in rejection(state, decided)


def test_a_second_different_bar_for_the_same_step_and_symbol_is_a_conflict() -> None:
    state = at_step_one()
    first = bar(FRAME, 1, 0)
    state = fold(decide(state, first), state)

    assert decide(state, first) == []
    assert "conflicts" in rejection(state, dataclasses.replace(first, volume=7.0))


def test_a_bar_whose_event_time_differs_from_its_step_is_rejected() -> None:
    state = at_step_one()
    state = fold(decide(state, bar(FRAME, 1, 0)), state)

    assert "event time differ" in rejection(state, bar(FRAME, 1, 1, event_time=12345))


@pytest.mark.parametrize(
    ("raw", "smoothed", "words"),
    [
        (math.nan, 0.0, "raw action nan"),
        (0.0, math.inf, "smoothed action inf"),
        (1.5, 0.0, "raw action 1.5"),
        (0.0, -1.01, "smoothed action -1.01"),
    ],
)
def test_actions_that_are_not_finite_in_range_are_rejected(
    raw: float, smoothed: float, words: str
) -> None:
    items = list(inputs())
    state, _ = run(items[: 1 + FRAME.n_symbols])  # step 0 marked, awaiting actions
    assert state.decision_step == 0

    assert words in rejection(state, action(FRAME, 0, 0, raw, smoothed))


def test_actions_for_unknown_symbols_future_steps_and_conflicts_are_rejected() -> None:
    items = list(inputs())
    state, _ = run(items[: 1 + FRAME.n_symbols + 1])  # one action of step 0 taken
    genuine = items[1 + FRAME.n_symbols]
    assert isinstance(genuine, ActionDecided)
    unknown = dataclasses.replace(
        genuine, symbol="NOPE", event_id=event_id(RUN, 0, "action", "NOPE")
    )
    future = dataclasses.replace(
        genuine,
        step=9,
        event_id=event_id(RUN, 9, "action", "S0"),
        cause_id=event_id(RUN, 9, "bar", "S0"),
    )
    forged_cause = dataclasses.replace(genuine, cause_id="elsewhere")

    assert "not in the run's universe" in rejection(state, unknown)
    assert "step 9 is not open" in rejection(state, future)
    assert "is not the id of the bar it answers" in rejection(state, forged_cause)
    assert decide(state, genuine) == []
    assert "conflicts" in rejection(state, dataclasses.replace(genuine, raw=0.123))


def test_a_conflicting_copy_of_a_decided_action_is_rejected_and_an_identical_one_ignored() -> None:
    items = list(inputs())
    state = at_step_one()
    genuine = items[1 + FRAME.n_symbols]
    assert isinstance(genuine, ActionDecided)

    assert decide(state, genuine) == []
    assert "conflicts with the decision" in rejection(
        state, dataclasses.replace(genuine, smoothed=0.9)
    )
    moved = dataclasses.replace(genuine, event_time=genuine.event_time + 5)
    assert "conflicts with the decision" in rejection(state, moved)


def test_a_restart_rebuilds_closes_so_fills_match() -> None:
    """What the manager needs to go on is a fold of its own events: restored equals live."""
    items = list(inputs())
    live, published = run(items[:200])
    ledger = [e for e in published if not isinstance(e, StepCompleted)]

    restored = restore(empty(), items[0], ledger)  # type: ignore[arg-type]

    assert restored.ledger == live.ledger
    assert dict(restored.closes) == dict(live.closes)
    assert restored.fill_step == live.fill_step and restored.decision_step == live.decision_step


def test_inputs_of_another_run_are_rejected() -> None:
    other = dataclasses.replace(started_event(), run_id="other")

    assert "is not this run" in rejection(empty(), other)  # type: ignore[arg-type]


def test_evolve_ignores_rejections() -> None:
    state = at_step_one()
    rejected = InputRejected(event_id="x", cause_id="y", run_id=RUN, event_time=0, reason="r")

    assert evolve(state, rejected) is state


# --- paced runs: deadlines, missed decisions, late actions, the last step ---

Item = Input


def paced_started() -> ReplayStarted:
    return dataclasses.replace(started_event(), mode=PACED)


def paced(items: list[Item]) -> list[Item]:
    """The same inputs in a paced run."""
    return [paced_started() if isinstance(i, ReplayStarted) else i for i in items]


def finished() -> ReplayFinished:
    return ReplayFinished(
        event_id=event_id(RUN, FRAME.n_steps, "replay-finished"),
        cause_id=event_id(RUN, FRAME.n_steps - 1, "completed"),
        run_id=RUN,
        event_time=int(FRAME.timestamps[-1]),
        steps=FRAME.n_steps,
    )


def ledger_only(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, StepCompleted | ReplayStarted)]


def test_a_paced_run_whose_actions_are_all_in_time_has_the_lockstep_ledger() -> None:
    _, lockstep = run(list(inputs()))
    state, out = run([*paced(list(inputs())), finished()])

    assert state.ledger.closed
    assert ledger_only(out) == ledger_only(lockstep)
    assert not any(isinstance(e, DecisionMissed | ActionLate | InputRejected) for e in out)


def step_inputs(t: int, *, acting: range) -> list[Item]:
    """Step t's bars and the actions of the symbols in ``acting`` (raw 0.9: buys)."""
    bars: list[Item] = [bar(FRAME, t, j) for j in range(FRAME.n_symbols)]
    return bars + [action(FRAME, t, j, 0.9, 0.9) for j in acting]


def test_the_next_steps_bars_are_the_deadline_symbols_without_an_action_are_missed() -> None:
    everyone = range(FRAME.n_symbols)
    items: list[Item] = [paced_started(), *step_inputs(0, acting=everyone)]
    items += step_inputs(1, acting=range(2))  # only S0 and S1 answer step 1
    state, before = run(items)
    assert state.decision_step == 1 and len(state.actions) == 2

    state, out = run([bar(FRAME, 2, j) for j in range(FRAME.n_symbols)], state)

    decided = [e for e in out if isinstance(e, DecisionRecorded)]
    missed = [e for e in out if isinstance(e, DecisionMissed)]
    assert [(e.symbol, e.step) for e in decided] == [("S0", 1), ("S1", 1)]
    assert [e.symbol for e in missed] == list(FRAME.symbols[2:])
    assert all(e.step == 1 and e.cause_id == event_id(RUN, 1, "bar", e.symbol) for e in missed)
    # The step is done, then step 2 is filled (only what was decided) and marked.
    kinds = [type(e).__name__ for e in out]
    assert kinds.index("StepCompleted") < kinds.index("AccountMarked")
    fills = [e for e in out if isinstance(e, OrderFilled)]
    assert {e.symbol for e in fills} <= {"S0", "S1"} and fills
    assert [e.step for e in out if isinstance(e, AccountMarked)] == [2]
    assert state.decision_step == 2 and state.ledger.decided_step == 1
    # The ledger folds (missed decisions are ledger events).
    fold_ledger([e for e in before + out if not isinstance(e, StepCompleted | InputRejected)])


def test_an_action_after_its_deadline_is_recorded_late_once_and_changes_nothing() -> None:
    items: list[Item] = [paced_started(), *step_inputs(0, acting=range(FRAME.n_symbols))]
    items += step_inputs(1, acting=range(0))
    items += [bar(FRAME, 2, j) for j in range(FRAME.n_symbols)]
    state, _ = run(items)
    cash = state.ledger.cash
    late = action(FRAME, 1, 3, 0.9, 0.9)

    events = decide(state, late)
    assert [type(e) for e in events] == [ActionLate]
    recorded = events[0]
    assert isinstance(recorded, ActionLate)
    assert recorded.cause_id == late.event_id and recorded.symbol == "S3"
    state = fold(events, state)
    assert state.ledger.cash == cash and state.ledger.pending == {}
    assert decide(state, late) == []  # a redelivery
    conflicting = decide(state, dataclasses.replace(late, raw=-0.5))
    assert [type(e) for e in conflicting] == [InputRejected]
    # Later than the last decided step: refused as late, not recorded.
    older = decide(state, action(FRAME, 0, 3, 0.9, 0.9))
    assert [type(e) for e in older] == [InputRejected]
    assert "conflicts" in older[0].reason or "late" in older[0].reason  # type: ignore[attr-defined]


def test_bars_of_later_steps_are_held_until_their_turn_and_can_pass_several_deadlines() -> None:
    items: list[Item] = [paced_started(), *step_inputs(0, acting=range(FRAME.n_symbols))]
    state, _ = run(items)
    assert state.fill_step == 1
    # Step 2's bars arrive first (another partition was faster), then step 1's.
    state, out = run([bar(FRAME, 2, j) for j in range(FRAME.n_symbols)], state)
    assert not [e for e in out if not is_input(e)]
    assert len(state.bars[2]) == FRAME.n_symbols

    state, out = run([bar(FRAME, 1, j) for j in range(FRAME.n_symbols)], state)

    # Step 1's bars are marked; step 2's bars, already in, were step 1's deadline
    # (no action: all missed); step 2 is marked.
    marks = [e.step for e in out if isinstance(e, AccountMarked)]
    done = [e.step for e in out if isinstance(e, StepCompleted)]
    missed = {(e.step, e.symbol) for e in out if isinstance(e, DecisionMissed)}
    assert marks == [1, 2] and done == [1]
    assert missed == {(1, s) for s in FRAME.symbols}
    assert state.decision_step == 2


def test_the_replays_end_is_the_last_steps_deadline_and_closes_the_run() -> None:
    everyone = range(FRAME.n_symbols)
    items: list[Item] = [paced_started()]
    for t in range(FRAME.n_steps):
        items += step_inputs(t, acting=everyone if t < FRAME.n_steps - 1 else range(1))
    state, _ = run(items)
    assert not state.ledger.closed and state.decision_step == FRAME.n_steps - 1

    state, out = run([finished()], state)

    assert state.ledger.closed
    assert isinstance([e for e in out if not isinstance(e, StepCompleted)][-1], PortfolioClosed)
    missed = [e for e in out if isinstance(e, DecisionMissed)]
    assert len(missed) == FRAME.n_symbols - 1
    assert decide(state, finished()) == []


def test_a_replays_end_read_before_the_last_bars_waits_for_them() -> None:
    everyone = range(FRAME.n_symbols)
    items: list[Item] = [paced_started()]
    for t in range(FRAME.n_steps - 1):
        items += step_inputs(t, acting=everyone)
    state, _ = run([*items, finished()])
    assert not state.ledger.closed

    state, out = run([bar(FRAME, FRAME.n_steps - 1, j) for j in everyone], state)

    assert state.ledger.closed  # marked, and its deadline had already passed
    assert len([e for e in out if isinstance(e, DecisionMissed)]) == FRAME.n_symbols


def test_lockstep_still_refuses_bars_of_a_step_that_is_not_open_and_ignores_the_end() -> None:
    items: list[Item] = list(inputs())
    first_steps = items[: 1 + FRAME.n_symbols]  # the start and step 0's bars
    state, _ = run(first_steps)
    events = decide(state, bar(FRAME, 1, 0))
    assert [type(e) for e in events] == [InputRejected]
    state, out = run([*items[1 + FRAME.n_symbols :], finished()], state)
    assert state.ledger.closed and not any(isinstance(e, InputRejected) for e in out)


def test_an_unknown_mode_is_refused() -> None:
    events = decide(empty(), dataclasses.replace(started_event(), mode="turbo"))
    assert [type(e) for e in events] == [InputRejected]
    assert "mode 'turbo'" in events[0].reason  # type: ignore[attr-defined]
