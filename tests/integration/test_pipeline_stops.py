"""An in-process pipeline stops when the program around it fails.

``asyncio.run`` that ends on an error cancels every task of its loop at
once, the Kafka clients' own sender and coordinator tasks included. The
services must still finish (a producer's close used to wait forever for
batches its cancelled sender would never send): a test, a notebook or a
benchmark that fails mid-run must fail, not hang.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from core.events import StepCompleted
from rl_agents.data import load_bars, universe
from services.kafka import STOP_TIMEOUT_S, read_topic
from services.pipeline import run_lockstep
from streams.topics import SIM_CLOCK


class _Failed(RuntimeError):
    """What the program around the pipeline raised."""


@pytest.mark.parametrize("agents", [1, 2])
def test_a_failure_beside_a_running_pipeline_ends_the_program(
    kafka_bootstrap: str, agents: int
) -> None:
    frame = universe(load_bars("bytetheory"), 10, start=20, steps=400)
    run_id = f"stops-{agents}-{time.time_ns()}"
    failed_at: list[float] = []

    async def fail_at_step_30() -> None:
        await read_topic(
            kafka_bootstrap,
            SIM_CLOCK.name,
            keep=lambda e: isinstance(e, StepCompleted) and e.run_id == run_id,
            until=lambda e: isinstance(e, StepCompleted) and e.step >= 30,
            timeout_s=300,
        )
        failed_at.append(time.monotonic())
        raise _Failed("the program failed mid-run")

    async def program() -> None:
        await asyncio.gather(
            run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=frame, agents=agents),
            fail_at_step_30(),
        )

    with pytest.raises(_Failed):
        asyncio.run(program())
    # Ends by itself: every client's close is bounded (kafka.stop), not the test's timeout.
    took = time.monotonic() - failed_at[0]
    assert took < 6 * STOP_TIMEOUT_S, f"the pipeline took {took:.0f}s to stop after the failure"
