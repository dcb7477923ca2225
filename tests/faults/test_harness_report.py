"""The fault harness's failure report says where a stalled run waits.

A trial that times out lists the partitions whose committed records stop short
of the log's end: a transaction left open there stalls every reader of
committed records without a word in any service's log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fixtures import broker_fixture, fault_broker_fixture  # noqa: F401 (the fixtures)
from harness import SMALL_SPAN, Broker, RunProcesses, run_id, tail, worth_showing

from services import kafka
from streams.topics import SIM_CLOCK


@pytest.mark.integration
def test_the_report_names_the_partition_an_open_transaction_holds(
    broker: Broker, tmp_path: Path
) -> None:
    async def scenario() -> tuple[str, str, str]:
        await kafka.create_topics(broker.bootstrap)
        run = RunProcesses(broker.bootstrap, run_id("report"), SMALL_SPAN, tmp_path, label="report")
        before = await run.open_transactions(settle_s=0.2)
        producer = kafka.transactional_producer(broker.bootstrap, "report", "fault-report-txn")
        await kafka.start(producer, broker.bootstrap)
        try:
            await producer.begin_transaction()
            await (await producer.send(SIM_CLOCK.name, b"held", key=b"held"))
            held = await run.open_transactions(settle_s=0.2)
            await producer.commit_transaction()
            after = await run.open_transactions(settle_s=0.2)
        finally:
            await kafka.stop(producer)
        return before, held, after

    before, held, after = asyncio.run(scenario())
    assert before == "open transactions: none (every end is stable)"
    assert held.startswith(f"open transactions: {SIM_CLOCK.name}[0] stable ")
    assert "< high watermark" in held
    assert after == "open transactions: none (every end is stable)"


def test_the_report_keeps_the_warnings_a_long_log_tail_would_hide(tmp_path: Path) -> None:
    log = tmp_path / "symbol-agent.log"
    lines = ["2026-12-02 13:06:08,228 symbol-agent INFO serving 8 of 8 bar partitions"]
    lines.append("2026-12-02 13:06:24,996 symbol-agent ERROR Heartbeat session expired")
    lines += [
        f"2026-12-02 13:06:25,{i:03d} symbol-agent ERROR cannot serve hostile-{i} (bad): keeping 1"
        for i in range(300)
    ]
    log.write_text("\n".join(lines) + "\n")
    assert "Heartbeat session expired" not in tail(log)
    assert tail(log, keep=worth_showing).splitlines() == [lines[1]]
