"""Crashes and redeliveries: the run completes with the uninterrupted run's ledger, byte for byte.

Real processes on a real broker of the module's own (``conftest.py``). Each
kill trial starts the three services of a run, waits until a step drawn from
the seed has completed on ``sim.clock``, sends SIGKILL to one service, starts
it again with the same environment, and compares the run's
``portfolio.events`` records with those of one uninterrupted reference run.
The trials' seed is in their names; ``TRADINGBOT_FAULT_SEED=<seed>`` reruns
the same trials. ``make test`` runs a small sample on a short span;
``make soak`` (``TRADINGBOT_FAULT_SOAK=1``) runs at least 20 trials on the
demo's full span.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures import broker_fixture, fault_broker_fixture  # noqa: F401 (the fixtures)
from harness import (
    FULL_SPAN,
    MARKET_REPLAY,
    PORTFOLIO_MANAGER,
    SEED,
    SMALL_SPAN,
    SYMBOL_AGENT,
    Broker,
    Ledger,
    RawRecord,
    RunProcesses,
    ledger_difference,
    records_since,
    send_copies,
    soak,
    trial,
)

from core.events import ActionDecided, BarClosed
from streams.topics import AGENT_ACTIONS, MARKET_BARS

SOAK = soak()
SPAN = FULL_SPAN if SOAK else SMALL_SPAN
RUN_TIMEOUT_S = 300.0 if SOAK else 90.0
"""Budget of one run, restarts included; a run that takes longer fails with the logs."""
KILL_TRIALS = 21 if SOAK else 3
KILLED = (PORTFOLIO_MANAGER, SYMBOL_AGENT, MARKET_REPLAY)

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@dataclass(frozen=True, slots=True)
class KillTrial:
    """Which service a trial kills, and after which completed step."""

    index: int
    service: str
    step: int

    def __str__(self) -> str:
        return f"seed{SEED}-{self.index}-{self.service}-after-step{self.step}"


def kill_trials(count: int) -> list[KillTrial]:
    """``count`` trials: the services in turn, each at a step drawn from the seed."""
    return [
        KillTrial(
            i, KILLED[i % len(KILLED)], random.Random(f"{SEED}/kill/{i}").randrange(SPAN.steps)
        )
        for i in range(count)
    ]


def _run(broker: Broker, name: str, log_dir: Path, label: str) -> RunProcesses:
    return trial(broker, name, log_dir, label, span=SPAN, timeout_s=RUN_TIMEOUT_S)


async def _uninterrupted(broker: Broker, name: str, log_dir: Path) -> Ledger:
    async with _run(broker, name, log_dir, f"uninterrupted run {name}") as run:
        run.start()
        return await run.finish()


@pytest.fixture(scope="module")
def reference(fault_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """The ledger of one uninterrupted run of the span (what every trial must reproduce)."""
    return asyncio.run(
        _uninterrupted(fault_broker, "reference", tmp_path_factory.mktemp("reference"))
    )


def test_two_uninterrupted_runs_give_byte_identical_ledgers(
    broker: Broker, reference: Ledger, tmp_path: Path
) -> None:
    again = asyncio.run(_uninterrupted(broker, "again", tmp_path))
    assert ledger_difference(reference, again) is None, ledger_difference(reference, again)


@pytest.mark.parametrize("trial", kill_trials(KILL_TRIALS), ids=str)
def test_service_killed_at_a_random_step_resumes_and_the_ledger_equals_the_reference(
    broker: Broker, reference: Ledger, trial: KillTrial, tmp_path: Path
) -> None:
    async def scenario() -> None:
        label = f"kill -9 {trial.service} after step {trial.step} (trial {trial.index})"
        async with _run(broker, f"kill-{trial.index}", tmp_path, label) as run:
            run.start()
            await run.wait_step(trial.step)
            run.kill(trial.service)
            run.restart(trial.service)
            run.expect_same_ledger(reference, await run.finish())

    asyncio.run(scenario())


FREEZE_S = 10.0
"""Longer than a group session (6 s) and the replay's wait for a step: the group evicts a
frozen agent, the others wait for the frozen service's records."""


@pytest.mark.parametrize("service", (SYMBOL_AGENT, PORTFOLIO_MANAGER))
def test_service_frozen_longer_than_its_session_goes_on_and_the_ledger_equals_the_reference(
    broker: Broker, reference: Ledger, service: str, tmp_path: Path
) -> None:
    step = random.Random(f"{SEED}/freeze/{service}").randrange(2, SPAN.steps // 2)

    async def scenario() -> None:
        label = f"SIGSTOP {service} for {FREEZE_S:.0f} s after step {step}, then SIGCONT"
        async with _run(broker, f"freeze-{service[:9]}", tmp_path, label) as run:
            run.start()
            await run.wait_step(step)
            await run.freeze(service, FREEZE_S)
            run.expect_same_ledger(reference, await run.finish())

    asyncio.run(scenario())


def test_market_replay_killed_before_the_run_starts_resumes_and_the_ledger_equals_the_reference(
    broker: Broker, reference: Ledger, tmp_path: Path
) -> None:
    async def scenario() -> None:
        label = "kill -9 market-replay one second after it was started"
        async with _run(broker, "replay-early", tmp_path, label) as run:
            run.start()
            await asyncio.sleep(1.0)
            await run.poll()
            run.notes.append(f"ReplayStarted seen before the kill: {run.clock.started}")
            run.kill(MARKET_REPLAY)
            run.restart(MARKET_REPLAY)
            run.expect_same_ledger(reference, await run.finish())

    asyncio.run(scenario())


def _processed(records: list[RawRecord], completed: int) -> list[RawRecord]:
    """The bars and actions of steps the run has completed."""
    return [
        r
        for r in records
        if isinstance(r.event, BarClosed | ActionDecided) and r.event.step <= completed
    ]


def test_bars_and_actions_published_again_change_nothing_in_the_ledger(
    broker: Broker, reference: Ledger, tmp_path: Path
) -> None:
    async def scenario() -> None:
        label = "identical copies of every processed bar and action, at a third and two thirds"
        async with _run(broker, "republish", tmp_path, label) as run:
            run.start()
            for step in (SPAN.steps // 3, 2 * SPAN.steps // 3):
                completed = await run.wait_step(step)
                copies: list[RawRecord] = []
                for topic in (MARKET_BARS.name, AGENT_ACTIONS.name):
                    found = await records_since(
                        broker.bootstrap, topic, run.run_id, run.offsets_at_start[topic]
                    )
                    copies += _processed(found, completed)
                await send_copies(broker.bootstrap, copies)
                run.notes.append(
                    f"sent {len(copies)} identical copies of the bars and actions of steps "
                    f"0-{completed}"
                )
            run.expect_same_ledger(reference, await run.finish())

    asyncio.run(scenario())


def test_broker_stopped_and_started_again_mid_run_and_the_ledger_equals_the_reference(
    broker: Broker, reference: Ledger, tmp_path: Path
) -> None:
    step = random.Random(f"{SEED}/broker").randrange(SPAN.steps // 4, 3 * SPAN.steps // 4)

    async def scenario() -> None:
        label = f"broker stopped after step {step} and started again on the same data"
        async with _run(broker, "broker-restart", tmp_path, label) as run:
            run.start()
            await run.wait_step(step)
            await asyncio.to_thread(broker.stop)
            run.notes.append(f"broker stopped when step {run.clock.completed} was the last done")
            await asyncio.sleep(2.0)
            await asyncio.to_thread(broker.start)
            run.notes.append(f"broker started again in {broker.last_start_s:.1f}s")
            run.expect_same_ledger(reference, await run.finish())

    asyncio.run(scenario())
