"""The step protocol as one aggregate: ``decide(state, input) -> events``, ``evolve(state, event)``.

The portfolio manager is a thin shell around this module. Its inputs are the
run's ``ReplayStarted`` (sim.clock), the bars (market.bars) and the agents'
actions (agent.actions); its outputs are the ledger's events
(portfolio.events) and ``StepCompleted`` (sim.clock). ``decide`` validates an
input against the state and returns what it causes:

- ``[]`` for an identical redelivery of an input already taken;
- ``[InputRejected]`` with the reason for an input that must not count
  (the shell dead-letters it with its source offset);
- otherwise the input itself, then every event it completes: the opening of
  the portfolio, the fills and the mark of a step whose bars are all in, the
  decisions (and, after the last step, the close) and ``StepCompleted`` of a
  step whose actions are all in.

``evolve`` folds inputs and outputs alike, so the state is always a fold of
the manager's own events plus the inputs it has consumed; ``restore`` rebuilds
it from the log after a restart. The rule "step t is complete" lives here and
nowhere else (``bars_complete``, ``actions_complete``), and so do the domain
checks of a bar and an action (``bar_problem``, ``action_problem``), which the
symbol agents call too. docs/architecture.md has the protocol.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from core.events import (
    AccountMarked,
    ActionDecided,
    ActionLate,
    BarClosed,
    DecisionMissed,
    DecisionRecorded,
    Event,
    ReplayFinished,
    ReplayStarted,
    StepCompleted,
    event_id,
)
from core.frozen import replace
from core.ledger import PortfolioState
from core.ledger import evolve as evolve_ledger
from core.portfolio import close_run, fill_pending, mark, open_portfolio, record_decisions
from core.rules import TradingRules

MAX_PRICE = 1e9
"""A price above this is refused as absurd (no listed share trades near it)."""
MAX_VOLUME = 1e15
"""A volume above this is refused as absurd."""
MAX_TEXT = 200
"""Longest symbol, policy name or version accepted."""

LOCKSTEP = "lockstep"
"""The replay waits for every step to complete before the next one's bars."""
PACED = "paced"
"""The replay emits bars on their own schedule: a step's actions are due by the
next step's bars (the last step's by ``ReplayFinished``); the step is then
decided with the actions at hand and every symbol without one is recorded
``DecisionMissed`` (it holds). An action that comes after that is recorded
``ActionLate`` and changes nothing."""
MODES = (LOCKSTEP, PACED)

Input = ReplayStarted | BarClosed | ActionDecided | ReplayFinished
"""What the portfolio manager consumes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputRejected(Event):
    """An input that the aggregate refused, with the reason (dead-lettered, never published)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepState:
    """The portfolio manager's state: the ledger plus what the step in progress has taken.

    ``bars`` holds the accepted bars of every step from the last decided one
    on (older steps are dropped); ``actions`` the accepted actions of the step
    open for decisions; ``decided`` the last decided step's decisions (to
    recognise a redelivered action); ``closes`` the close of every held symbol
    at the last mark.
    """

    run_id: str
    portfolio_id: str
    rules: TradingRules
    ledger: PortfolioState = field(default_factory=PortfolioState)
    started: ReplayStarted | None = None
    bars: Mapping[int, Mapping[str, BarClosed]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    actions: Mapping[str, ActionDecided] = field(default_factory=lambda: MappingProxyType({}))
    decided: Mapping[str, DecisionRecorded] = field(default_factory=lambda: MappingProxyType({}))
    closes: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    missed: Mapping[str, ActionLate | None] = field(default_factory=lambda: MappingProxyType({}))
    """The last decided step's missed symbols, with the late action recorded for each."""
    finished: bool = False
    """The replay's ``ReplayFinished`` was taken (a paced run's last deadline)."""
    marked_time: int = -1
    completed_step: int = -1

    @property
    def paced(self) -> bool:
        """Whether the run is paced (deadlines) rather than lockstep."""
        return self.started is not None and self.started.mode == PACED

    @property
    def fill_step(self) -> int | None:
        """The step whose bars are being collected (None while a step awaits its actions)."""
        led = self.ledger
        if not led.opened or led.closed or led.decided_step < led.marked_step:
            return None
        return led.marked_step + 1

    @property
    def decision_step(self) -> int | None:
        """The step whose actions are being collected (None while bars are awaited)."""
        led = self.ledger
        if not led.opened or led.closed or led.decided_step >= led.marked_step:
            return None
        return led.marked_step


def bars_complete(bars: Mapping[str, BarClosed]) -> bool:
    """Whether ``bars`` (one step's, by symbol) hold every bar the step announces."""
    return bool(bars) and len(bars) >= next(iter(bars.values())).step_bars


def actions_complete(actions: Mapping[str, object], bars_marked: int) -> bool:
    """Whether a step has an action for each of the ``bars_marked`` symbols that had a bar."""
    return bars_marked > 0 and len(actions) >= bars_marked


def _finite_in(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high


def started_problem(started: ReplayStarted) -> str | None:
    """Why a ``ReplayStarted`` cannot open a run, or None."""
    if not started.symbols:
        return "the run has no symbols"
    if len(set(started.symbols)) != len(started.symbols):
        return "the run's symbols repeat"
    if any(not s or len(s) > MAX_TEXT for s in started.symbols):
        return f"a symbol is empty or longer than {MAX_TEXT} characters"
    if started.steps_total < 1:
        return f"steps_total {started.steps_total} is not positive"
    if started.mode not in MODES:
        return f"mode {started.mode[:MAX_TEXT]!r} is not one of {', '.join(MODES)}"
    return None


def bar_problem(bar: BarClosed, started: ReplayStarted) -> str | None:
    """Why ``bar`` is impossible in the run ``started`` opened, or None (no state needed)."""
    if bar.symbol not in started.symbols:
        return f"symbol {bar.symbol[:MAX_TEXT]!r} is not in the run's universe"
    if not 0 <= bar.step < started.steps_total:
        return f"step {bar.step} is outside the run (0 to {started.steps_total - 1})"
    if bar.steps_total != started.steps_total:
        return f"steps_total {bar.steps_total} differs from the run's {started.steps_total}"
    if not 1 <= bar.step_bars <= len(started.symbols):
        return f"step_bars {bar.step_bars} is not in 1..{len(started.symbols)}"
    if bar.event_id != event_id(bar.run_id, bar.step, "bar", bar.symbol):
        return f"event id {bar.event_id[:MAX_TEXT]!r} is not the id of this bar"
    for name in ("open", "high", "low", "close"):
        value = getattr(bar, name)
        if not (math.isfinite(value) and 0.0 < value <= MAX_PRICE):
            return f"{name} {value!r} is not a finite price in (0, {MAX_PRICE:g}]"
    if not _finite_in(bar.volume, 0.0, MAX_VOLUME):
        return f"volume {bar.volume!r} is not a finite number in [0, {MAX_VOLUME:g}]"
    if not bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high:
        return (
            f"prices are inconsistent: low {bar.low!r} <= open {bar.open!r}, "
            f"close {bar.close!r} <= high {bar.high!r} does not hold"
        )
    if bar.event_time < started.event_time:
        return f"event time {bar.event_time} is before the run's start {started.event_time}"
    return None


def action_problem(action: ActionDecided, started: ReplayStarted) -> str | None:
    """Why ``action`` is impossible in the run ``started`` opened, or None (no state needed)."""
    if action.symbol not in started.symbols:
        return f"symbol {action.symbol[:MAX_TEXT]!r} is not in the run's universe"
    if not 0 <= action.step < started.steps_total:
        return f"step {action.step} is outside the run (0 to {started.steps_total - 1})"
    for name in ("raw", "smoothed"):
        value = getattr(action, name)
        if not _finite_in(value, -1.0, 1.0):
            return f"{name} action {value!r} is not a finite number in [-1, 1]"
    if len(action.policy) > MAX_TEXT or len(action.policy_version) > MAX_TEXT:
        return f"policy name or version is longer than {MAX_TEXT} characters"
    if action.event_id != event_id(action.run_id, action.step, "action", action.symbol):
        return f"event id {action.event_id[:MAX_TEXT]!r} is not the id of this action"
    if action.cause_id != event_id(action.run_id, action.step, "bar", action.symbol):
        return f"cause id {action.cause_id[:MAX_TEXT]!r} is not the id of the bar it answers"
    return None


def _rejected(state: StepState, item: Event, reason: str) -> list[Event]:
    return [
        InputRejected(
            event_id=f"{item.event_id[:MAX_TEXT]}/rejected",
            cause_id=item.event_id[:MAX_TEXT],
            run_id=state.run_id,
            event_time=item.event_time,
            reason=reason,
        )
    ]


def decide(state: StepState, item: Input) -> list[Event]:
    """The events that input ``item`` causes in ``state`` (see the module docstring)."""
    if item.run_id != state.run_id:
        return _rejected(state, item, f"run {item.run_id[:MAX_TEXT]!r} is not this run")
    if isinstance(item, ReplayStarted):
        return _decide_started(state, item)
    if state.started is None:
        return _rejected(state, item, "the run has not started (no ReplayStarted yet)")
    if isinstance(item, BarClosed):
        return _decide_bar(state, item, state.started)
    if isinstance(item, ReplayFinished):
        return _decide_finished(state, item, state.started)
    return _decide_action(state, item, state.started)


def _decide_started(state: StepState, started: ReplayStarted) -> list[Event]:
    if state.started is not None:
        if started == state.started:
            return []
        return _rejected(state, started, "conflicts with the run's ReplayStarted")
    problem = started_problem(started)
    if problem is not None:
        return _rejected(state, started, problem)
    if state.ledger.opened:
        if started.symbols != state.ledger.symbols:
            return _rejected(state, started, "its symbols differ from the opened portfolio's")
        return [started]
    opened = open_portfolio(
        run_id=started.run_id,
        portfolio_id=state.portfolio_id,
        symbols=started.symbols,
        rules=state.rules,
        cause_id=started.event_id,
        event_time=started.event_time,
    )
    return [started, opened]


def _decide_bar(state: StepState, bar: BarClosed, started: ReplayStarted) -> list[Event]:
    problem = bar_problem(bar, started)
    if problem is not None:
        return _rejected(state, bar, problem)
    taken = state.bars.get(bar.step, {})
    existing = taken.get(bar.symbol)
    if existing is not None:
        if existing == bar:
            return []
        return _rejected(
            state, bar, f"conflicts with the bar of {bar.symbol} at step {bar.step} already taken"
        )
    led = state.ledger
    if led.closed:
        return _rejected(state, bar, "the run is closed")
    if bar.step == state.decision_step:
        # Consumed again after a restart: the step is filled and marked, and
        # its bars say which symbols may act.
        if len(taken) >= led.marked_bars:
            return _rejected(state, bar, f"step {bar.step} already has its {led.marked_bars} bars")
        return [bar]
    fill = state.fill_step
    if state.paced and bar.step > led.marked_step:
        pass  # bars of any step after the last mark are taken (and held) as they come
    elif fill is None or bar.step != fill:
        at = fill if fill is not None else led.marked_step
        if bar.step < at:
            return _rejected(state, bar, f"late: step {bar.step} is complete (the run is at {at})")
        return _rejected(state, bar, f"step {bar.step} is not open (the run is at step {at})")
    if taken:
        first = next(iter(taken.values()))
        if bar.step_bars != first.step_bars or bar.event_time != first.event_time:
            return _rejected(
                state, bar, "step_bars or event time differ from the step's other bars"
            )
    if bar.event_time <= state.marked_time:
        return _rejected(state, bar, f"event time {bar.event_time} is not after the last step's")
    if bar.step != led.marked_step + 1 or len(taken) + 1 < bar.step_bars:
        return [bar]
    return _advance(evolve(state, bar), [bar])


def _advance(state: StepState, out: list[Event]) -> list[Event]:
    """Append to ``out`` (already folded into ``state``) every step it lets complete.

    A step whose bars are all in is filled and marked once the step before is
    decided; in a paced run, those bars (or ``ReplayFinished`` after the last
    step) are also the deadline that decides the step before.
    """
    total = state.started.steps_total if state.started is not None else 0
    while not state.ledger.closed:
        nxt = state.ledger.marked_step + 1
        complete = nxt < total and bars_complete(state.bars.get(nxt, {}))
        open_step = state.decision_step
        if open_step is not None:
            due = complete or (state.finished and nxt >= total)
            if not (state.paced and due):
                break
            events = _decisions(state, open_step, state.actions)
        elif complete:
            events = _fill_and_mark(state, nxt, state.bars[nxt])
        else:
            break
        out.extend(events)
        state = fold(events, state)
    return out


def _decide_finished(
    state: StepState, finished: ReplayFinished, started: ReplayStarted
) -> list[Event]:
    expected = event_id(state.run_id, started.steps_total, "replay-finished")
    if finished.event_id != expected or finished.steps != started.steps_total:
        return _rejected(state, finished, "is not the end of this run's replay")
    if state.finished:
        return []
    return _advance(evolve(state, finished), [finished])


def _fill_and_mark(state: StepState, step: int, bars: Mapping[str, BarClosed]) -> list[Event]:
    """Fill the orders decided at step-1 at the opens of ``step``, then mark at its closes."""
    led = state.ledger
    symbols = led.symbols
    open_px = np.array([bars[s].open if s in bars else np.nan for s in symbols])
    last_close = np.array([state.closes.get(s, np.nan) for s in symbols])
    event_time = next(iter(bars.values())).event_time
    events: list[Event] = fill_pending(
        led,
        step=step,
        event_time=event_time,
        open_px=open_px,
        last_close=last_close,
        rules=state.rules,
    )
    after = led
    for event in events:
        after = evolve_ledger(after, event)
    for i, symbol in enumerate(symbols):
        bar = bars.get(symbol)
        if bar is not None:
            last_close[i] = bar.close
    events.append(
        mark(
            after,
            step=step,
            event_time=event_time,
            last_close=last_close,
            bars=len(bars),
            cause_id=event_id(led.run_id, step, "bars"),
        )
    )
    return events


def _decide_action(state: StepState, action: ActionDecided, started: ReplayStarted) -> list[Event]:
    problem = action_problem(action, started)
    if problem is not None:
        return _rejected(state, action, problem)
    led = state.ledger
    step = state.decision_step
    if step is not None and action.step == step:
        existing = state.actions.get(action.symbol)
        if existing is not None:
            if existing == action:
                return []
            return _rejected(
                state, action, f"conflicts with the action of {action.symbol} at step {step}"
            )
        answered = state.bars.get(step, {}).get(action.symbol)
        if answered is None:
            return _rejected(state, action, f"{action.symbol} had no bar at step {step}")
        if action.event_time != answered.event_time:
            return _rejected(state, action, "its event time is not its bar's")
        if len(state.actions) + 1 < led.marked_bars:
            return [action]
        actions = {**state.actions, action.symbol: action}
        if not actions_complete(actions, led.marked_bars):
            return [action]
        decided = [action, *_decisions(state, step, actions)]
        return _advance(fold(decided, state), decided)
    if action.step == led.decided_step:
        if action.symbol in state.missed:
            return _late(state, action)
        recorded = state.decided.get(action.symbol)
        if (
            recorded is not None
            and recorded.step == action.step
            and _same_decision(action, recorded)
        ):
            return []
        return _rejected(
            state,
            action,
            f"conflicts with the decision of {action.symbol} at step {action.step} recorded",
        )
    if led.closed:
        return _rejected(state, action, "the run is closed")
    at = step if step is not None else led.decided_step + 1
    if action.step < at:
        return _rejected(state, action, f"late: step {action.step} is decided (the run is at {at})")
    return _rejected(state, action, f"step {action.step} is not open (the run is at step {at})")


def _late(state: StepState, action: ActionDecided) -> list[Event]:
    """An action for a symbol whose decision at the last decided step was missed."""
    recorded = state.missed.get(action.symbol)
    late = ActionLate(
        event_id=event_id(state.run_id, action.step, "late", action.symbol),
        cause_id=action.event_id,
        run_id=state.run_id,
        event_time=action.event_time,
        symbol=action.symbol,
        step=action.step,
        raw=action.raw,
        smoothed=action.smoothed,
        policy=action.policy,
        policy_version=action.policy_version,
    )
    if recorded is None:
        bar = state.bars.get(action.step, {}).get(action.symbol)
        if bar is not None and action.event_time != bar.event_time:
            return _rejected(state, action, "its event time is not its bar's")
        return [late]
    if recorded == late:
        return []
    return _rejected(state, action, f"conflicts with the late action of {action.symbol} recorded")


def _same_decision(action: ActionDecided, recorded: DecisionRecorded) -> bool:
    return (
        recorded.cause_id == action.event_id
        and recorded.event_time == action.event_time
        and recorded.raw == action.raw
        and recorded.smoothed == action.smoothed
        and recorded.policy == action.policy
        and recorded.policy_version == action.policy_version
    )


def _decisions(state: StepState, step: int, actions: Mapping[str, ActionDecided]) -> list[Event]:
    """Record the step's decisions (closing the run after the last step); the step is done.

    A symbol that had a bar and has no action (a paced run's deadline) is
    recorded ``DecisionMissed``.
    """
    led = state.ledger
    bars = state.bars.get(step, {})
    event_time = next(iter(bars.values())).event_time if bars else state.marked_time
    events: list[Event] = list(
        record_decisions(
            led, step=step, event_time=event_time, actions=list(actions.values()), rules=state.rules
        )
    )
    events.extend(
        DecisionMissed(
            event_id=event_id(led.run_id, step, "missed", symbol),
            cause_id=bars[symbol].event_id,
            run_id=led.run_id,
            event_time=event_time,
            symbol=symbol,
            step=step,
        )
        for symbol in led.symbols
        if symbol in bars and symbol not in actions
    )
    started = state.started
    if started is not None and step == started.steps_total - 1:
        after = led
        for event in events:
            after = evolve_ledger(after, event)
        events.extend(
            close_run(after, step=step, event_time=event_time, cause_id=f"{led.run_id}/end")
        )
    events.append(
        StepCompleted(
            event_id=event_id(led.run_id, step, "completed"),
            cause_id=event_id(led.run_id, step, "marked"),
            run_id=led.run_id,
            event_time=event_time,
            step=step,
        )
    )
    return events


def _put(mapping: Mapping[str, object], key: str, value: object) -> MappingProxyType:
    return MappingProxyType({**mapping, key: value})


def evolve(state: StepState, event: Event) -> StepState:
    """Fold one input or output event into the state."""
    if isinstance(event, BarClosed):
        step_bars = _put(state.bars.get(event.step, {}), event.symbol, event)
        return replace(state, bars=MappingProxyType({**state.bars, event.step: step_bars}))
    if isinstance(event, ActionDecided):
        return replace(state, actions=_put(state.actions, event.symbol, event))
    if isinstance(event, ReplayStarted):
        return replace(state, started=event)
    if isinstance(event, ReplayFinished):
        return replace(state, finished=True)
    if isinstance(event, ActionLate):
        return replace(state, missed=_put(state.missed, event.symbol, event))
    if isinstance(event, StepCompleted):
        kept = {s: b for s, b in state.bars.items() if s >= event.step}
        return replace(
            state,
            bars=MappingProxyType(kept),
            actions=MappingProxyType({}),
            completed_step=max(state.completed_step, event.step),
        )
    if isinstance(event, InputRejected):
        return state
    ledger = evolve_ledger(state.ledger, event)
    if isinstance(event, AccountMarked):
        closes = MappingProxyType({h.symbol: h.close for h in event.holdings})
        return replace(state, ledger=ledger, closes=closes, marked_time=event.event_time)
    if isinstance(event, DecisionRecorded):
        same_step = state.decided and next(iter(state.decided.values())).step == event.step
        decided = _put(state.decided if same_step else {}, event.symbol, event)
        return replace(state, ledger=ledger, decided=decided, missed=MappingProxyType({}))
    if isinstance(event, DecisionMissed):
        same_step = ledger.decided_step == state.ledger.decided_step
        missed = _put(state.missed if same_step else {}, event.symbol, None)
        return replace(state, ledger=ledger, missed=missed)
    return replace(state, ledger=ledger)


def fold(events: Iterable[Event], state: StepState) -> StepState:
    """Fold events into ``state``."""
    for event in events:
        state = evolve(state, event)
    return state


def restore(
    state: StepState, started: ReplayStarted | None, log: Iterable[Event], completed: int = -1
) -> StepState:
    """Rebuild a manager's state from the run's start, its ledger and its last completed step."""
    if started is not None:
        state = evolve(state, started)
    state = fold(log, state)
    return replace(state, completed_step=completed)


def is_input(event: Event) -> bool:
    """Whether ``event`` is one of the aggregate's inputs (not to be published again)."""
    return isinstance(event, ReplayStarted | BarClosed | ActionDecided | ReplayFinished)
