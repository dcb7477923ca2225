"""The collapse detector worker on a real broker: validated input only, refusals in one line.

Two lockstep runs of the same data and fleet, each watched by a detector
process of its own: a clean one, and one into whose ``agent.actions``
hostile records are written while it runs (actions for a step far in the
future and for a step of the run not yet open, for a symbol outside the run,
and conflicting second actions for steps already decided). The portfolio
manager refuses them all, so the detector, fed by the ledger, must end with
exactly the clean run's statistics and alerts.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata
from detector_support import detector_env, start_detector

from core.events import (
    ActionDecided,
    CollapseDetected,
    CollapseResolved,
    DecisionRecorded,
    StepCompleted,
    event_id,
)
from rl_agents.data import load_bars, universe
from services import kafka
from services.monitoring import (
    AgentAlerts,
    MonitoringError,
    read_alerts,
    start_detector_at_end,
    wait_for_detector,
)
from services.pipeline import run_lockstep
from services.symbol_agent.app import AgentConfig
from streams.codec import CODEC
from streams.topics import AGENT_ACTIONS, PORTFOLIO_EVENTS, SIM_CLOCK

REPO = Path(__file__).resolve().parents[2]
FRAME = universe(load_bars("bytetheory"), 4, start=10, steps=70)
AGENT = AgentConfig(fleet="mixed", collapsed_every=2)
"""Every second agent always answers BUY_SMALL: alerts from its 50th decision on."""
HOSTILE_AT = (5, 20, 40)
"""Steps after whose completion the hostile records are sent."""


def hostile_actions(run_id: str, step: int) -> list[tuple[str, ActionDecided]]:
    """Return well-formed actions that the portfolio manager must refuse after ``step``."""
    first, second = FRAME.symbols[:2]

    def action(symbol: str, at: int, raw: float) -> ActionDecided:
        return ActionDecided(
            event_id=event_id(run_id, at, "action", symbol),
            cause_id="hostile",
            run_id=run_id,
            event_time=0,
            symbol=symbol,
            step=at,
            raw=raw,
            smoothed=raw,
            policy="hostile",
            policy_version="0",
        )

    return [
        (first, action(first, 10_000, 0.9)),  # far beyond the run
        (second, action(second, FRAME.n_steps - 1, -0.9)),  # in the run, not open yet
        (first, action("ZZZZ", step + 1, 0.5)),  # a symbol outside the run
        (first, action(first, step, -0.7)),  # conflicts with the decision of ``step``
        (second, action(second, step - 3, 0.7)),  # conflicts with an older decision
    ]


async def inject_hostile(bootstrap: str, run_id: str) -> list[RecordMetadata]:
    """Send the hostile actions after each step of ``HOSTILE_AT``; return where they landed."""
    client = kafka.producer(bootstrap, "hostile")
    await kafka.start(client, bootstrap)
    landed = []
    try:
        for step in HOSTILE_AT:
            await kafka.read_topic(
                bootstrap,
                SIM_CLOCK.name,
                keep=lambda e: isinstance(e, StepCompleted) and e.run_id == run_id,
                until=lambda e, at=step: isinstance(e, StepCompleted) and e.step >= at,  # type: ignore[misc]
                timeout_s=120,
            )
            for key, record in hostile_actions(run_id, step):
                landed.append(
                    await client.send_and_wait(
                        AGENT_ACTIONS.name, CODEC.encode(record), key=key.encode()
                    )
                )
    finally:
        await client.stop()
    return landed


async def newest_action_offsets(bootstrap: str, run_id: str) -> dict[int, int]:
    """Return the offset of the run's last genuine action in each partition of agent.actions."""
    reader = kafka.consumer(bootstrap, "hostile-check")
    await kafka.start(reader, bootstrap)
    try:
        partitions = [
            TopicPartition(AGENT_ACTIONS.name, p) for p in range(AGENT_ACTIONS.partitions)
        ]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        newest: dict[int, int] = {}

        async def behind() -> bool:
            return any([await reader.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            for tp, records in (await reader.getmany(timeout_ms=500)).items():
                for r in records:
                    event = CODEC.decode(r.value)
                    if isinstance(event, ActionDecided) and event.run_id == run_id:
                        if event.cause_id != "hostile":
                            newest[tp.partition] = r.offset
        return newest
    finally:
        await reader.stop()


def scrape(port: int) -> dict[str, float]:
    """Return the detector's per-agent samples and its action count, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r"^((?:tradingbot_agent_|tradingbot_detector_actions_total)\S*) (\S+)$",
            text,
            re.MULTILINE,
        )
        if "_created{" not in m.group(1)  # wall-clock creation times of the counters
    }


def comparable(alerts: dict[str, AgentAlerts], run_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Return each agent's alerts in order, with what they say (the run id out of the cause)."""
    out: dict[str, list[tuple[object, ...]]] = {}
    for agent, found in alerts.items():
        events: list[CollapseDetected | CollapseResolved] = [*found.detected, *found.resolved]
        out[agent] = [
            (type(a).__name__, a.metric, a.severity, a.actions, a.value, a.threshold,
             a.cause_id.replace(run_id, "<run>"))
            for a in events
        ]  # fmt: skip
    return out


@dataclass
class Watched:
    run_id: str
    alerts: dict[str, AgentAlerts]
    metrics: dict[str, float]
    decisions: dict[str, int]
    """DecisionRecorded per symbol in the run's ledger."""


@dataclass
class Runs:
    clean: Watched
    hostile: Watched
    landed: list[RecordMetadata]
    newest_genuine: dict[int, int]


@pytest.fixture(scope="module")
def runs(
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    port_finder: Callable[[int], list[int]],
) -> Iterator[Runs]:
    tmp = tmp_path_factory.mktemp("detector")
    ids = {"clean": "it-detector-clean", "hostile": "it-detector-hostile"}
    ports = dict(zip(ids, port_finder(2), strict=True))
    detectors = {}
    for name, run_id in ids.items():
        env = detector_env(
            kafka_bootstrap, run_id, TRADINGBOT_DETECTOR_METRICS_PORT=str(ports[name])
        )
        asyncio.run(start_detector_at_end(kafka_bootstrap, env["TRADINGBOT_DETECTOR_APP_ID"]))
        detectors[name] = start_detector(env, tmp / f"{name}.log")

    async def scenario() -> list[RecordMetadata]:
        _, _, landed = await asyncio.gather(
            run_lockstep(bootstrap=kafka_bootstrap, run_id=ids["clean"], frame=FRAME, agent=AGENT),
            run_lockstep(
                bootstrap=kafka_bootstrap, run_id=ids["hostile"], frame=FRAME, agent=AGENT
            ),
            inject_hostile(kafka_bootstrap, ids["hostile"]),
        )
        return landed

    try:
        landed = asyncio.run(scenario())
        watched = {}
        for name, run_id in ids.items():
            try:
                asyncio.run(
                    wait_for_detector(kafka_bootstrap, f"collapse-detector-{run_id}", timeout_s=180)
                )
            except MonitoringError as e:
                log = (tmp / f"{name}.log").read_text()[-4000:]
                raise AssertionError(f"{e}; the worker's log ends:\n{log}") from e
            ledger = asyncio.run(kafka.read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, run_id))
            decisions: dict[str, int] = {}
            for record in ledger:
                if isinstance(record, DecisionRecorded):
                    decisions[record.symbol] = decisions.get(record.symbol, 0) + 1
            watched[name] = Watched(
                run_id=run_id,
                alerts=asyncio.run(read_alerts(kafka_bootstrap, run_id)),
                metrics=scrape(ports[name]),
                decisions=decisions,
            )
        yield Runs(
            clean=watched["clean"],
            hostile=watched["hostile"],
            landed=landed,
            newest_genuine=asyncio.run(newest_action_offsets(kafka_bootstrap, ids["hostile"])),
        )
    finally:
        for process in detectors.values():
            process.terminate()
            process.wait(timeout=60)


def test_hostile_actions_were_written_while_the_run_still_decided(runs: Runs) -> None:
    assert len(runs.landed) == 5 * len(HOSTILE_AT)
    for record in runs.landed:
        assert runs.newest_genuine[record.partition] > record.offset


def test_hostile_actions_leave_the_detectors_statistics_equal_to_a_clean_runs(
    runs: Runs,
) -> None:
    assert runs.hostile.metrics == runs.clean.metrics
    window = {
        m.group(1): count
        for key, count in runs.hostile.metrics.items()
        if (m := re.fullmatch(r'tradingbot_agent_window_actions\{agent="(\w+)"\}', key))
    }
    assert window == {s: float(n) for s, n in runs.hostile.decisions.items()}


def test_hostile_actions_leave_the_detectors_alerts_equal_to_a_clean_runs(runs: Runs) -> None:
    collapsed = {s for j, s in enumerate(FRAME.symbols) if j % 2 == 0}
    assert set(runs.clean.alerts) == collapsed
    assert comparable(runs.hostile.alerts, runs.hostile.run_id) == comparable(
        runs.clean.alerts, runs.clean.run_id
    )


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def refusal(env: dict[str, str]) -> tuple[int, str]:
    return exit_of(start_detector(env))


def exit_of(process: subprocess.Popen[bytes], timeout_s: float = 90) -> tuple[int, str]:
    """The detector's exit code and stderr; the test fails when it does not exit in time."""
    try:
        _, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"the detector did not exit within {timeout_s:.0f}s:\n{err.decode()[-3000:]}")
    return process.returncode, err.decode()


def assert_one_line(err: str, *words: str) -> None:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], err


def test_a_taken_metrics_port_stops_the_detector_in_one_line_naming_the_setting(
    kafka_bootstrap: str, listening_port: int
) -> None:
    env = detector_env(
        kafka_bootstrap, "it-detector-port", TRADINGBOT_DETECTOR_METRICS_PORT=str(listening_port)
    )

    code, err = refusal(env)

    assert code == 2
    assert_one_line(err, f"port {listening_port}", "TRADINGBOT_DETECTOR_METRICS_PORT")


def test_a_taken_web_port_stops_the_detector_in_one_line_naming_the_setting(
    kafka_bootstrap: str, listening_port: int
) -> None:
    env = detector_env(
        kafka_bootstrap,
        "it-detector-web",
        TRADINGBOT_DETECTOR_METRICS_PORT="0",
        TRADINGBOT_DETECTOR_WEB_PORT=str(listening_port),
    )

    code, err = refusal(env)

    assert code == 2
    assert_one_line(err, f"port {listening_port}", "TRADINGBOT_DETECTOR_WEB_PORT")


def test_a_broker_that_does_not_answer_stops_the_detector_in_one_line() -> None:
    with socket.socket() as held:  # bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        bootstrap = f"127.0.0.1:{held.getsockname()[1]}"
        env = detector_env(bootstrap, "it-detector-broker", TRADINGBOT_DETECTOR_METRICS_PORT="0")

        code, err = refusal(env)

    assert code == 2
    assert_one_line(err, bootstrap, "TRADINGBOT_BOOTSTRAP")


@pytest.mark.parametrize("after_s", [1.0, 3.0, 8.0])
def test_sigterm_while_starting_or_running_stops_the_detector_cleanly(
    kafka_bootstrap: str, port_finder: Callable[[int], list[int]], after_s: float
) -> None:
    """A supervisor's stop is exit 0 at any moment: while faust imports, starts or runs."""
    (port,) = port_finder(1)
    env = detector_env(
        kafka_bootstrap,
        f"it-detector-sigterm-{int(after_s * 10)}",
        TRADINGBOT_DETECTOR_METRICS_PORT=str(port),
    )
    process = start_detector(env)
    try:
        process.communicate(timeout=after_s)
        pytest.fail("the detector ended before it was stopped")
    except subprocess.TimeoutExpired:
        pass
    process.send_signal(signal.SIGTERM)
    code, err = exit_of(process)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
