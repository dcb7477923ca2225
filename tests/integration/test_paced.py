"""Paced replay on the real broker: bars on their own schedule, deadlines, latency from the logs.

The services run in one event loop (``services.pipeline``) on the session's
Kafka. A paced run is not reproducible to the byte (what is in time depends
on the machine), so the tests check what must hold whatever the timing:
every bar gets exactly one decision, recorded or missed; the run closes; the
ledger folds; the latencies read back from the logs match the decisions.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import numpy as np
import pytest

from core.bars import BarFrame
from core.events import (
    ActionLate,
    BarClosed,
    DecisionMissed,
    DecisionRecorded,
    Event,
    PortfolioClosed,
    StepCompleted,
)
from core.ledger import fold
from core.rules import TradingRules
from rl_agents.data import load_bars, universe
from services.config import KafkaConfig
from services.errors import RunClosed
from services.kafka import read_run
from services.latency import run_latency
from services.market_replay.app import MarketReplay, ReplayConfig, speed_factor
from services.pipeline import run_lockstep
from services.portfolio_manager.app import PortfolioConfig, PortfolioManager
from services.symbol_agent.app import AgentConfig, SymbolAgent
from streams.topics import MARKET_BARS, PORTFOLIO_EVENTS

pytestmark = pytest.mark.integration

SYMBOLS, STEPS = 10, 40


@pytest.fixture(scope="module")
def frame() -> BarFrame:
    return universe(load_bars("bytetheory"), SYMBOLS, steps=STEPS)


def speed_for(frame: BarFrame, seconds_per_step: float) -> str:
    """The ``Nx`` speed at which the median bar interval takes ``seconds_per_step``."""
    interval_s = float(np.median(np.diff(frame.timestamps))) / 1e9
    return f"{interval_s / seconds_per_step:.0f}x"


async def ledger_of(bootstrap: str, run_id: str) -> list[Event]:
    return await read_run(bootstrap, PORTFOLIO_EVENTS.name, run_id, until=PortfolioClosed)


def check_every_bar_is_decided_once(frame: BarFrame, ledger: list[Event]) -> Counter[str]:
    """Every bar of the span has one DecisionRecorded or one DecisionMissed, never both."""
    outcome: dict[tuple[int, str], str] = {}
    for e in ledger:
        if isinstance(e, DecisionRecorded | DecisionMissed):
            key = (e.step, e.symbol)
            assert key not in outcome, f"{key} decided twice ({outcome[key]}, {type(e).__name__})"
            outcome[key] = type(e).__name__
    bars = {(t, s) for t in range(frame.n_steps) for j, s in enumerate(frame.symbols)
            if frame.present[t, j]}  # fmt: skip
    assert set(outcome) == bars
    fold([e for e in ledger if not isinstance(e, StepCompleted)])  # the ledger is consistent
    return Counter(outcome.values())


def test_speed_parsing() -> None:
    assert speed_factor("60x") == 60.0 and speed_factor("1.5x") == 1.5
    assert speed_factor("max") is None
    with pytest.raises(ValueError, match="neither 'max'"):
        speed_factor("fast")


def test_a_paced_run_keeps_the_schedule_and_decides_every_bar_once(
    kafka_bootstrap: str, frame: BarFrame
) -> None:
    run_id = f"paced-{time.time_ns()}"
    replay = ReplayConfig(mode="paced", speed=speed_for(frame, 0.25))
    began = time.monotonic()
    state, _ = asyncio.run(
        run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=frame, replay=replay)
    )
    wall = time.monotonic() - began
    assert state.closed
    # On schedule: the span's bar times at the chosen speed, not as fast as possible.
    speed = speed_factor(replay.speed)
    assert speed is not None
    span_s = float(frame.timestamps[-1] - frame.timestamps[0]) / 1e9 / speed
    assert wall >= span_s * 0.9

    ledger = asyncio.run(ledger_of(kafka_bootstrap, run_id))
    outcomes = check_every_bar_is_decided_once(frame, ledger)
    latency = asyncio.run(run_latency(kafka_bootstrap, run_id))
    assert latency.decisions == outcomes["DecisionRecorded"]
    assert latency.missed == outcomes["DecisionMissed"]
    bar_to_decision = next(p for p in latency.paths if p.path == "bar -> decision")
    assert bar_to_decision.count == latency.decisions > 0
    assert 0 < bar_to_decision.p50_ms <= bar_to_decision.p99_ms <= bar_to_decision.max_ms


def test_an_agent_that_starts_late_has_its_first_steps_missed_and_late_actions_recorded(
    kafka_bootstrap: str, frame: BarFrame
) -> None:
    """The market does not wait: the portfolio decides without the actions that are not in."""
    run_id = f"paced-late-{time.time_ns()}"
    rules = TradingRules()
    config = KafkaConfig(bootstrap=kafka_bootstrap, run_id=run_id)
    replay = ReplayConfig(
        mode="paced",
        speed=speed_for(frame, 0.5),
        wait_for=("portfolio-manager",),
        metrics_port=0,
        dataset=frame.source,
    )

    async def scenario() -> None:
        manager = PortfolioManager(config, rules, PortfolioConfig(metrics_port=0))
        market = MarketReplay(config, replay, frame)
        agent = SymbolAgent(config, AgentConfig(metrics_port=0), rules)
        tasks = [asyncio.ensure_future(manager.serve()), asyncio.ensure_future(market.serve())]
        try:
            # The agent comes up after a few steps were decided without it.
            while manager.state.ledger.marked_step < 4:
                await asyncio.sleep(0.02)
                for task in tasks:
                    if task.done():
                        task.result()
            tasks.append(asyncio.ensure_future(agent.serve()))
            done, _ = await asyncio.wait(tasks, timeout=120, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            assert len(done) == len(tasks), "the run did not finish"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    ledger = asyncio.run(ledger_of(kafka_bootstrap, run_id))
    outcomes = check_every_bar_is_decided_once(frame, ledger)
    missed_steps = {e.step for e in ledger if isinstance(e, DecisionMissed)}
    assert {0, 1, 2, 3} <= missed_steps
    assert outcomes["DecisionRecorded"] > 0, "the agent never caught up"
    late = [e for e in ledger if isinstance(e, ActionLate)]
    missed = {(e.step, e.symbol) for e in ledger if isinstance(e, DecisionMissed)}
    assert all((e.step, e.symbol) in missed for e in late)


def test_max_speed_runs_as_fast_as_the_pipeline_takes_the_bars(
    kafka_bootstrap: str, frame: BarFrame
) -> None:
    run_id = f"paced-max-{time.time_ns()}"
    replay = ReplayConfig(mode="paced", speed="max", max_lead=4)
    state, seconds = asyncio.run(
        run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=frame, replay=replay)
    )
    assert state.closed
    ledger = asyncio.run(ledger_of(kafka_bootstrap, run_id))
    check_every_bar_is_decided_once(frame, ledger)
    bars = asyncio.run(read_run(kafka_bootstrap, MARKET_BARS.name, run_id, timeout_s=30))
    assert len([b for b in bars if isinstance(b, BarClosed)]) == int(frame.present.sum())


def test_three_agents_in_a_group_give_the_one_agent_ledger_in_process(
    kafka_bootstrap: str, frame: BarFrame
) -> None:
    """The lockstep ledger does not depend on how many members share the bars."""
    one, three = f"group-1-{time.time_ns()}", f"group-3-{time.time_ns()}"
    asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id=one, frame=frame))
    asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id=three, frame=frame, agents=3))

    def normalised(run_id: str) -> list[str]:
        return [
            repr(e).replace(run_id, "RUN") for e in asyncio.run(ledger_of(kafka_bootstrap, run_id))
        ]

    assert normalised(three) == normalised(one)


def test_an_agent_launched_before_the_close_that_joins_after_it_ends_and_a_later_one_is_refused(
    kafka_bootstrap: str, frame: BarFrame
) -> None:
    """A member of the agents' group may get its bars only once the run is over.

    It was launched for the run while it was open (a scale-out member slow to
    join), so it ends without an error; an agent launched after the close is
    refused: the run id is spent.
    """
    run_id = f"late-member-{time.time_ns()}"
    config = KafkaConfig(bootstrap=kafka_bootstrap, run_id=run_id)
    late = SymbolAgent(config, AgentConfig(metrics_port=0), TradingRules())
    asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=frame))
    ledger = asyncio.run(ledger_of(kafka_bootstrap, run_id))

    asyncio.run(asyncio.wait_for(late.serve(), timeout=60))

    assert late.closed
    with pytest.raises(RunClosed, match="already closed"):
        after = SymbolAgent(config, AgentConfig(metrics_port=0), TradingRules())
        asyncio.run(asyncio.wait_for(after.serve(), timeout=60))
    assert asyncio.run(ledger_of(kafka_bootstrap, run_id)) == ledger
