"""Symbol agents scaled out as one consumer group: members added and killed mid-run.

Real processes on a real broker of the module's own. The symbol agents of a
run share the partitions of ``market.bars`` as the consumer group
``tradingbot-agents-<run>``; when a member joins or dies, Kafka moves its
partitions and each member rebuilds its symbols from the run's start. A
lockstep run's ledger must not change: no bar lost (the run completes), no
action counted twice (the ledger equals the uninterrupted one-agent run's,
byte for byte).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fixtures import broker_fixture, fault_broker_fixture  # noqa: F401 (the fixtures)
from harness import (
    EXTRA_AGENTS,
    FULL_SPAN,
    MARKET_REPLAY,
    PORTFOLIO_MANAGER,
    SMALL_SPAN,
    SYMBOL_AGENT,
    Broker,
    Ledger,
    RunProcesses,
    Span,
    soak,
    trial,
)

from streams.topics import MARKET_BARS

SOAK = soak()
SPAN = FULL_SPAN if SOAK else Span(symbols=SMALL_SPAN.symbols, steps=245)
"""Every day of the bundled data: long enough for members to join and die mid-run."""
RUN_TIMEOUT_S = 300.0 if SOAK else 120.0

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _run(broker: Broker, name: str, log_dir: Path, label: str) -> RunProcesses:
    return trial(broker, name, log_dir, label, span=SPAN, timeout_s=RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def reference(fault_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """The ledger of one uninterrupted run with a single symbol agent."""

    async def scenario() -> Ledger:
        log_dir = tmp_path_factory.mktemp("reference")
        async with _run(fault_broker, "one-agent", log_dir, "one agent, uninterrupted") as run:
            run.start()
            return await run.finish()

    return asyncio.run(scenario())


def _serving(run: RunProcesses, name: str) -> list[str]:
    """The 'serving N of 8 bar partitions' lines of one agent's log."""
    text = run.services[name].log.read_text(errors="replace")
    return [line for line in text.splitlines() if "bar partitions of run" in line]


def test_three_agents_from_the_start_share_the_bars_and_give_the_one_agent_ledger(
    broker: Broker, reference: Ledger, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with _run(broker, "three", tmp_path, "three agents from the start") as run:
            run.start(PORTFOLIO_MANAGER, SYMBOL_AGENT, *EXTRA_AGENTS[:2])
            await asyncio.sleep(2.0)  # the group settles before the first bar
            run.start(MARKET_REPLAY)
            run.expect_same_ledger(reference, await run.finish())
            shares = [_serving(run, n)[-1] for n in (SYMBOL_AGENT, *EXTRA_AGENTS[:2])]
            owned = [int(line.split("serving ")[1].split(" of ")[0]) for line in shares]
            assert sum(owned) == MARKET_BARS.partitions and min(owned) >= 1, shares

    asyncio.run(scenario())


def test_agents_added_and_one_killed_mid_run_lose_no_bar_and_double_no_action(
    broker: Broker, reference: Ledger, tmp_path: Path
) -> None:
    added_at = SPAN.steps // 10

    async def scenario() -> None:
        label = f"two agents added after step {added_at}, one of them killed -9 once serving"
        async with _run(broker, "grow-shrink", tmp_path, label) as run:
            run.start()
            await run.wait_step(added_at)
            run.start(*EXTRA_AGENTS[:2])
            await run.wait_for(
                lambda: all(_serving(run, n) for n in EXTRA_AGENTS[:2]),
                "the added agents serving their partitions",
            )
            joined = run.clock.completed
            assert joined < SPAN.steps - 20, f"the run was nearly over ({joined}) when they joined"
            await run.wait_step(joined + 10)
            run.remove(EXTRA_AGENTS[0])
            run.expect_same_ledger(reference, await run.finish())
            # The first agent gave partitions away, then took the dead member's back.
            assert len(_serving(run, SYMBOL_AGENT)) >= 3, _serving(run, SYMBOL_AGENT)

    asyncio.run(scenario())
