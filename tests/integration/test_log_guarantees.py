"""What the event log promises: determinism, dead letters, rebuild from the log."""

from __future__ import annotations

import asyncio
import dataclasses

from core.events import ActionDecided, DecisionRecorded, Event, StepCompleted, event_id
from core.ledger import fold
from rl_agents.data import load_bars, universe
from services import kafka
from services.kafka import read_run, read_topic
from services.pipeline import run_lockstep
from streams.codec import CODEC, DeadLettered
from streams.topics import AGENT_ACTIONS, PORTFOLIO_EVENTS, SIM_CLOCK

FRAME = universe(load_bars("bytetheory"), 6, start=10, steps=12)


def _ledger_bytes(bootstrap: str, run_id: str) -> list[bytes]:
    events = asyncio.run(read_run(bootstrap, PORTFOLIO_EVENTS.name, run_id))
    return [CODEC.encode(e).replace(run_id.encode(), b"<run>") for e in events]


def test_same_data_and_policy_give_a_byte_identical_ledger(kafka_bootstrap: str) -> None:
    for run_id in ("it-det-a", "it-det-b"):
        asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=FRAME))
    first = _ledger_bytes(kafka_bootstrap, "it-det-a")
    second = _ledger_bytes(kafka_bootstrap, "it-det-b")
    assert len(first) > 6 * 12
    assert first == second


def test_folding_the_ledger_from_the_broker_gives_the_managers_final_state(
    kafka_bootstrap: str,
) -> None:
    state, _ = asyncio.run(
        run_lockstep(bootstrap=kafka_bootstrap, run_id="it-rebuild", frame=FRAME)
    )
    rebuilt = fold(asyncio.run(read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, "it-rebuild")))
    assert rebuilt == state
    assert rebuilt.closed and rebuilt.fills > 0


async def _sabotage(bootstrap: str, run_id: str) -> None:
    """Once step 2 is done, send four records the portfolio manager must refuse."""
    await read_topic(
        bootstrap,
        SIM_CLOCK.name,
        keep=lambda e: isinstance(e, StepCompleted) and e.run_id == run_id,
        until=lambda e: isinstance(e, StepCompleted) and e.step >= 2,
        timeout_s=120,
    )
    symbol = FRAME.symbols[0]
    good = ActionDecided(
        event_id=event_id(run_id, 0, "action", symbol),
        cause_id=event_id(run_id, 0, "bar", symbol),
        run_id=run_id,
        event_time=0,
        symbol=symbol,
        step=0,
        raw=0.5,
        smoothed=0.5,
        policy="test",
        policy_version="0",
    )
    records = [
        b"not an event " + run_id.encode(),
        CODEC.encode(_replace(good, symbol="ZZZZ", step=3)),
        CODEC.encode(_replace(good, raw=2.0, smoothed=2.0, step=3)),
        CODEC.encode(good),  # step 0 was decided long ago: a late, conflicting copy
    ]
    producer = kafka.producer(bootstrap, "saboteur")
    await producer.start()
    try:
        for value in records:
            await producer.send_and_wait(AGENT_ACTIONS.name, value, key=symbol.encode())
    finally:
        await producer.stop()


def _replace(action: ActionDecided, **changes: object) -> ActionDecided:
    return dataclasses.replace(action, **changes)  # type: ignore[arg-type]


def test_bad_actions_are_dead_lettered_with_reasons_and_the_run_completes(
    kafka_bootstrap: str,
) -> None:
    run_id = "it-dlq"

    async def scenario() -> None:
        await asyncio.gather(
            run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=FRAME),
            _sabotage(kafka_bootstrap, run_id),
        )

    asyncio.run(scenario())
    letters = [
        e
        for e in asyncio.run(read_topic(kafka_bootstrap, AGENT_ACTIONS.dlq))
        if isinstance(e, DeadLettered) and run_id.encode() in e.payload
    ]
    reasons = sorted(letter.reason for letter in letters)
    assert len(letters) == 4, reasons
    assert any(r.startswith("not an event envelope") for r in reasons)
    assert any("'ZZZZ' is not in the run's universe" in r for r in reasons)
    assert any("raw action 2.0 is not a finite number in [-1, 1]" in r for r in reasons)
    assert any("late: step 0 is decided" in r for r in reasons)
    assert all(letter.source_topic == AGENT_ACTIONS.name for letter in letters)
    assert all(letter.service == "portfolio-manager" for letter in letters)

    ledger: list[Event] = asyncio.run(read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, run_id))
    decisions = [e for e in ledger if isinstance(e, DecisionRecorded)]
    assert len(decisions) == FRAME.n_symbols * FRAME.n_steps
    assert all(d.policy != "test" for d in decisions)
