"""The step aggregate in a paced run: deadlines, missed decisions, late actions, the last step."""

from __future__ import annotations

import dataclasses

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
from core.step import PACED, InputRejected, decide, fold, is_input
from tests.unit.core.test_step import FRAME, RUN, action, bar, empty, inputs, run, started_event

Item = ReplayStarted | BarClosed | ActionDecided | ReplayFinished


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
    assert events[0].cause_id == late.event_id and events[0].symbol == "S3"
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
