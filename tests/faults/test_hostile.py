"""Hostile input during a run: every record is dead-lettered, the ledger does not move.

The generator (``hostile.py``) is checked first without a broker: each kind
of record is what it claims to be (the codec refuses the malformed ones; the
well-formed ones are events of the run, never identical copies of genuine
records) and the same seed gives the same records. Then, on a broker of the
module's own, a clean run gives the reference ledger and a second run of the
same span gets ``PER_TOPIC`` hostile records on each input topic while it
runs: every service must stay up, the ledger must equal the clean one byte
for byte, and every hostile record must be in a dead-letter topic with a
reason (matched by source topic, partition and offset). ``make soak`` sends
10,000 per topic during a run of the demo's full span.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path

import pytest
from fixtures import broker_fixture, fault_broker_fixture  # noqa: F401 (the fixtures)
from harness import (
    FULL_SPAN,
    SEED,
    SYMBOL_AGENT,
    Broker,
    Ledger,
    RunProcesses,
    Span,
    ledger_difference,
    run_id,
    soak,
)
from hostile import (
    HOSTILE_TOPICS,
    OVERSIZED,
    HostileGenerator,
    HostileRecord,
    HostileSender,
    RunView,
    attack,
    dead_letters,
    describe_undelivered,
    undelivered,
)

from core.events import (
    ActionDecided,
    BarClosed,
    Event,
    ModelPublished,
    ReplayStarted,
    StepCompleted,
    event_id,
)
from streams.codec import CODEC, CodecError
from streams.topics import AGENT_MODELS

SOAK = soak()
SPAN = FULL_SPAN if SOAK else Span(symbols=20, steps=90)
PER_TOPIC = 10_000 if SOAK else 300
RUN_TIMEOUT_S = 600.0 if SOAK else 120.0
FIRST_STEP = 3
"""The sender waits until this step has completed (there are records to copy)."""
MARGIN_STEPS = 20
"""Every record is sent this many steps before the end, so each service reads it while it runs."""
UNDECODABLE = {
    "random-bytes",
    "empty-value",
    "null-value",
    "not-an-envelope",
    "truncated",
    "unknown-type",
    "unknown-version",
    "wrong-field-type",
    "missing-field",
    "nan-or-infinity",
    "oversized-bytes",
}
"""The kinds the codec must refuse; every other kind is a well-formed event."""

pytestmark = pytest.mark.faults


# --------------------------------------------------------------------- the generator


def _view(tmp_path: Path) -> RunView:
    """A run of four symbols and 60 steps whose steps 0-9 are complete."""
    run = "fault-view-run"
    symbols = ("AAA", "BBB", "CCC", "DDD")
    started = ReplayStarted(
        event_id=event_id(run, -1, "replay-started"),
        cause_id=run,
        run_id=run,
        event_time=1_000,
        symbols=symbols,
        steps_total=60,
        dataset="bytetheory",
        mode="lockstep",
    )
    view = RunView(run, tmp_path)
    view.take(started, b"started")
    for step in range(10):
        for j, symbol in enumerate(symbols):
            price = 10.0 + step + j
            bar = BarClosed(
                event_id=event_id(run, step, "bar", symbol),
                cause_id=run,
                run_id=run,
                event_time=1_000 + step,
                symbol=symbol,
                step=step,
                steps_total=60,
                step_bars=len(symbols),
                open=price,
                high=price + 1.0,
                low=price - 1.0,
                close=price + 0.5,
                volume=1_000.0,
            )
            action = ActionDecided(
                event_id=event_id(run, step, "action", symbol),
                cause_id=bar.event_id,
                run_id=run,
                event_time=bar.event_time,
                symbol=symbol,
                step=step,
                raw=0.25,
                smoothed=0.1,
                policy="momentum",
                policy_version="momentum-v1",
            )
            view.take(bar, f"bar {step} {symbol}".encode())
            view.take(action, f"action {step} {symbol}".encode())
        completed = StepCompleted(
            event_id=event_id(run, step, "completed"),
            cause_id=run,
            run_id=run,
            event_time=1_000 + step,
            step=step,
        )
        view.take(completed, f"completed {step}".encode())
    return view


def _draw(seed: int, tmp_path: Path, per_topic: int) -> tuple[RunView, list[HostileRecord]]:
    view = _view(tmp_path)
    generator = HostileGenerator(seed, view)
    return view, [generator.record(t.name) for t in HOSTILE_TOPICS for _ in range(per_topic)]


def _why_impossible(event: object, view: RunView) -> str | None:
    """An independent reading of why a well-formed hostile event cannot be used (None: it can)."""
    assert view.started is not None
    symbols, total = view.started.symbols, view.started.steps_total
    if isinstance(event, ModelPublished):
        return "a model that cannot be served" if event.checkpoint else None
    if not isinstance(event, Event) or event.run_id != view.run_id:
        return None
    if isinstance(event, BarClosed | ActionDecided):
        kind = "bar" if isinstance(event, BarClosed) else "action"
        if event.symbol not in symbols:
            return "unknown symbol"
        if not 0 <= event.step < total:
            return "step outside the run"
        if event.event_id != event_id(view.run_id, event.step, kind, event.symbol):
            return "forged id"
        if isinstance(event, ActionDecided):
            if not all(math.isfinite(x) and -1 <= x <= 1 for x in (event.raw, event.smoothed)):
                return "action outside [-1, 1]"
            if event.step > view.completed + 1:
                return "step not open"
        genuine = view.genuine(event)
        if genuine is not None and genuine != event:
            return "conflicts with the genuine record"
        return None
    if isinstance(event, StepCompleted):
        genuine = view.genuine(event)
        if not 0 <= event.step < total or event.step > view.completed + 1:
            return "step end outside the run or ahead of it"
        if event.event_id != event_id(view.run_id, event.step, "completed"):
            return "forged id"
        return "conflicts with the genuine record" if genuine not in (None, event) else None
    if isinstance(event, ReplayStarted):
        return "contradicts the run's start" if event != view.started else None
    return f"a {type(event).__name__} where only the run's own producer writes it"


def test_hostile_records_are_what_their_kind_says_and_never_identical_copies(
    tmp_path: Path,
) -> None:
    view, records = _draw(SEED, tmp_path, per_topic=2_000)
    problems: list[str] = []
    for record in records:
        try:
            event: object = CODEC.decode(record.value)
        except CodecError:
            if record.kind not in UNDECODABLE:
                problems.append(f"{record.topic} {record.kind}: the codec refuses it")
            continue
        if record.kind in UNDECODABLE:
            problems.append(f"{record.topic} {record.kind}: the codec reads it as {event!r:.200}")
        elif _why_impossible(event, view) is None:
            problems.append(f"{record.topic} {record.kind}: a usable record {event!r:.300}")
    assert not problems, f"{len(problems)} wrong records, e.g.:\n" + "\n".join(problems[:20])
    for topic in HOSTILE_TOPICS:
        drawn = Counter(r.kind for r in records if r.topic == topic.name)
        never = set(HostileGenerator(SEED, view).kinds[topic.name]) - set(drawn)
        assert not never, f"{topic.name}: kinds never drawn in 2,000 records: {sorted(never)}"


def test_hostile_records_are_sized_for_the_broker_and_oversized_ones_are_hundreds_of_kb(
    tmp_path: Path,
) -> None:
    _, records = _draw(SEED, tmp_path, per_topic=2_000)
    sizes = [len(r.value or b"") for r in records]
    assert max(sizes) < 1_000_000
    oversized = [len(r.value or b"") for r in records if r.kind.startswith("oversized")]
    assert oversized and min(oversized) >= OVERSIZED[0]
    models = [r for r in records if r.topic == AGENT_MODELS.name]
    assert len({r.key for r in models}) == len(models), "agent.models keys must not repeat"


def test_the_same_seed_gives_the_same_hostile_records(tmp_path: Path) -> None:
    _, first = _draw(SEED, tmp_path, per_topic=300)
    _, again = _draw(SEED, tmp_path, per_topic=300)
    assert first == again


# --------------------------------------------------------------------- on a broker


@pytest.fixture(scope="module")
def clean(fault_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """The ledger of a clean run of the span, before any hostile record is sent."""

    async def run() -> Ledger:
        log_dir = tmp_path_factory.mktemp("clean")
        async with RunProcesses(
            fault_broker.bootstrap,
            run_id("clean"),
            SPAN,
            log_dir,
            label=f"seed {SEED}: clean run",
            timeout_s=RUN_TIMEOUT_S,
        ) as processes:
            processes.start()
            return await processes.finish()

    return asyncio.run(run())


FREEZE_S = 10.0
"""How long the frozen variant stops the agent: longer than its group session (6 s)."""


@pytest.mark.integration
@pytest.mark.timeout(int(RUN_TIMEOUT_S * 2))
@pytest.mark.parametrize("frozen", (None, SYMBOL_AGENT), ids=("running", "agent-frozen"))
def test_hostile_records_on_every_input_topic_are_dead_lettered_and_the_ledger_is_unchanged(
    broker: Broker, clean: Ledger, frozen: str | None, tmp_path: Path
) -> None:
    async def scenario() -> None:
        label = (
            f"{PER_TOPIC} hostile records into each of {', '.join(t.name for t in HOSTILE_TOPICS)}"
            f" after steps {FIRST_STEP}-{SPAN.steps - MARGIN_STEPS}"
            + (f", {frozen} frozen (SIGSTOP) {FREEZE_S:.0f} s in the middle" if frozen else "")
        )
        async with (
            RunProcesses(
                broker.bootstrap,
                run_id("hostile-frozen" if frozen else "hostile"),
                SPAN,
                tmp_path / "logs",
                label=f"seed {SEED}: {label}",
                timeout_s=RUN_TIMEOUT_S,
            ) as run,
            HostileSender(
                broker.bootstrap,
                run.run_id,
                SEED,
                tmp_path,
                per_topic=PER_TOPIC,
                first=FIRST_STEP,
                last=SPAN.steps - MARGIN_STEPS,
            ) as sender,
        ):
            await attack(run, sender, freeze=frozen, freeze_s=FREEZE_S)
            run.notes.append(
                f"sent {len(sender.sent)} hostile records; the last was acknowledged when step "
                f"{sender.finished_at_step} was the last completed"
            )
            ledger = await run.finish()
            if not sender.done or (sender.finished_at_step or 0) > SPAN.steps - 3:
                run.fail(
                    "the run went faster than the hostile sender: not every record was sent well "
                    "before the end (a limit of the test, not of the services: give the run "
                    "more steps or fewer records)"
                )
            problems: list[str] = []
            difference = ledger_difference(clean, ledger)
            if difference is not None:
                problems.append(difference)
            missing = undelivered(sender.sent, await dead_letters(broker.bootstrap))
            if missing:
                problems.append(describe_undelivered(missing, len(sender.sent)))
            # Hostile models are refused without stalling the agent: it keeps its group session
            # (unless the test froze it).
            agent_log = run.services[SYMBOL_AGENT].log.read_text(errors="replace")
            expired = [line for line in agent_log.splitlines() if "session expired" in line.lower()]
            if expired and frozen is None:
                problems.append(
                    f"the symbol agent lost its group session {len(expired)} time(s) under hostile "
                    f"input (its event loop stalled): {expired[0]}"
                )
            if problems:
                run.fail("\n".join(problems))

    asyncio.run(scenario())
