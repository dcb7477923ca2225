"""Clear refusals: one line, a non-zero exit, no traceback (real broker, real processes)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.events import ServiceReady
from rl_agents.data import load_bars, universe
from services import kafka
from services.pipeline import run_lockstep
from streams.topics import AGENT_ACTIONS, SIM_CLOCK

REPO = Path(__file__).resolve().parents[2]
FRAME = universe(load_bars("bytetheory"), 4, steps=5)


def service_env(bootstrap: str, run_id: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TRADINGBOT_BOOTSTRAP": bootstrap,
        "TRADINGBOT_RUN_ID": run_id,
        "TRADINGBOT_PORTFOLIO_METRICS_PORT": "0",
        "TRADINGBOT_AGENT_METRICS_PORT": "0",
        "TRADINGBOT_REPLAY_METRICS_PORT": "0",
        **extra,
    }


def start(module: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout_s: float = 90) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"{process.args!r} did not exit within {timeout_s:.0f}s:\n{err[-3000:]}")
    return process.returncode, err


def assert_one_line_refusal(err: str, *words: str) -> None:
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    for word in words:
        assert word in last, err


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port bound here and not listening: taken for a server, refused to a client."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def eventually(check: Callable[[], bool], timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.2)


def test_a_metrics_port_in_use_is_refused_in_one_line(kafka_bootstrap: str, held_port: int) -> None:
    env = service_env(
        kafka_bootstrap, "it-refuse-port", TRADINGBOT_PORTFOLIO_METRICS_PORT=str(held_port)
    )

    code, err = finish(start("services.portfolio_manager", env))

    assert code == 2
    assert_one_line_refusal(err, f"port {held_port}", "TRADINGBOT_PORTFOLIO_METRICS_PORT")


def test_a_broker_that_does_not_answer_is_refused_in_one_line(held_port: int) -> None:
    env = service_env(f"127.0.0.1:{held_port}", "it-refuse-broker", TRADINGBOT_BROKER_RETRY_S="2")

    code, err = finish(start("services.portfolio_manager", env))

    assert code == 2
    assert_one_line_refusal(err, "Kafka", f"127.0.0.1:{held_port}")


@pytest.mark.parametrize(
    ("module", "variable", "value", "words"),
    [
        ("services.market_replay", "TRADINGBOT_REPLAY_SPEED", "fast", ["pattern"]),
        ("services.market_replay", "TRADINGBOT_REPLAY_MODE", "turbo", ["'lockstep' or 'paced'"]),
        ("services.symbol_agent", "TRADINGBOT_AGENT_METRICS_PORT", "99999", ["65535"]),
    ],
)
def test_a_bad_setting_is_refused_naming_its_variable(
    module: str, variable: str, value: str, words: list[str]
) -> None:
    env = service_env("127.0.0.1:1", "it-refuse-setting", **{variable: value})

    code, err = finish(start(module, env))

    assert code == 2
    assert_one_line_refusal(err, f"{variable}={value!r}", "is not accepted", *words)


def test_a_closed_run_is_refused_by_every_service(kafka_bootstrap: str) -> None:
    run_id = "it-refuse-closed"
    asyncio.run(run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=FRAME))
    env = service_env(
        kafka_bootstrap,
        run_id,
        TRADINGBOT_REPLAY_SYMBOLS="4",
        TRADINGBOT_REPLAY_STEPS="5",
    )

    for module in ("services.portfolio_manager", "services.symbol_agent"):
        code, err = finish(start(module, env))
        assert code == 3, (module, err)
        assert_one_line_refusal(err, "already closed", "TRADINGBOT_RUN_ID")


def test_a_second_portfolio_manager_fences_the_first_which_exits_in_one_line(
    kafka_bootstrap: str,
) -> None:
    run_id = "it-refuse-second"
    env = service_env(kafka_bootstrap, run_id)

    def readies() -> int:
        events = asyncio.run(kafka.read_run(kafka_bootstrap, SIM_CLOCK.name, run_id))
        return sum(isinstance(e, ServiceReady) for e in events)

    first = start("services.portfolio_manager", env)
    second: subprocess.Popen[str] | None = None
    try:
        eventually(lambda: readies() >= 1, what="the first manager's ServiceReady")
        second = start("services.portfolio_manager", env)
        eventually(lambda: readies() >= 2, what="the second manager's ServiceReady")
        # Anything the first must answer makes it try a transaction with its fenced id.
        asyncio.run(_send_junk(kafka_bootstrap, run_id))

        code, err = finish(first)

        assert code == 2
        assert_one_line_refusal(err, "another instance took over")
        assert second.poll() is None, "the second manager must go on serving the run"
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.communicate(timeout=30)


async def _send_junk(bootstrap: str, run_id: str) -> None:
    producer = kafka.producer(bootstrap, "it-junk")
    await producer.start()
    try:
        await producer.send_and_wait(AGENT_ACTIONS.name, f"junk {run_id}".encode(), key=b"A")
    finally:
        await producer.stop()
