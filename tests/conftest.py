"""Fixtures shared by the integration and end-to-end tests: a real Kafka broker.

The broker is the project's own (deploy/local/kafka/kafka.sh), started once
per test session on a free port with a fresh data directory, bound to
127.0.0.1, and stopped when the session ends.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.kafka import create_topics
from services.ports import free_ports

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "deploy" / "local" / "kafka" / "kafka.sh"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real single-node Kafka started for this test session."""
    port, controller = free_ports(2)
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_DATA_DIR": str(tmp_path_factory.mktemp("kafka")),
        "KAFKA_FRESH": "1",
    }
    started = subprocess.run(
        ["bash", str(KAFKA_SCRIPT), "start"], env=env, capture_output=True, text=True
    )
    if started.returncode != 0:
        pytest.fail(f"the test Kafka did not start:\n{started.stdout}\n{started.stderr}")
    bootstrap = f"127.0.0.1:{port}"
    try:
        asyncio.run(create_topics(bootstrap))
        yield bootstrap
    finally:
        subprocess.run(["bash", str(KAFKA_SCRIPT), "stop"], env=env, capture_output=True)


SHARED_DATA = REPO.parent / "shared" / "data"
"""The real US-equity bars beside the checkout (never copied into it; CI has them)."""


@pytest.fixture(scope="session")
def shared_data() -> Callable[[str], Path]:
    """A function giving the path of a file of ``../shared/data``.

    Without the file the test is skipped, naming it: the shared bars live beside
    the checkout, never in it, so a bare clone has none (CI has them).
    """

    def path(name: str) -> Path:
        found = SHARED_DATA / name
        if not found.is_file():
            pytest.skip(
                f"needs ../shared/data/{name} ({found.resolve()}): the real US-equity bars "
                "live beside the checkout, never in it; clone with ../shared beside it"
            )
        return found

    return path


@pytest.fixture(scope="session")
def port_finder() -> Callable[[int], list[int]]:
    """A function giving distinct free ports on 127.0.0.1."""
    return free_ports


TIMESCALEDB_SCRIPT = REPO / "deploy" / "local" / "timescaledb" / "timescaledb.sh"


class TimescaleServer:
    """A real TimescaleDB of deploy/local/timescaledb/timescaledb.sh on a port of its own."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.env = {
            **os.environ,
            "TIMESCALEDB_PORT": str(port),
            "TIMESCALEDB_DATA_DIR": str(data_dir),
        }

    def url(self, database: str = "tradingbot") -> str:
        """Connection URL of ``database`` on this server."""
        return f"postgresql://tradingbot:tradingbot@127.0.0.1:{self.port}/{database}"

    def script(self, command: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``timescaledb.sh COMMAND`` for this server."""
        return subprocess.run(
            ["bash", str(TIMESCALEDB_SCRIPT), command],
            env={**self.env, **env},
            capture_output=True,
            text=True,
        )

    def start(self, **env: str) -> None:
        """Start the server (or check that it runs); fail the test if it cannot."""
        started = self.script("start", **env)
        if started.returncode != 0:
            pytest.fail(f"the test TimescaleDB did not start:\n{started.stdout}\n{started.stderr}")

    def stop(self) -> None:
        """Stop the server (fast shutdown); its mounts go with its processes."""
        stopped = self.script("stop")
        if stopped.returncode != 0:
            pytest.fail(f"the test TimescaleDB did not stop:\n{stopped.stdout}\n{stopped.stderr}")

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` (dropping one of that name); its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def timescaledb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimescaleServer]:
    """A real TimescaleDB started for this test session on a free port with a fresh data dir."""
    server = TimescaleServer(free_ports(1)[0], tmp_path_factory.mktemp("timescaledb"))
    server.start(TIMESCALEDB_FRESH="1")
    try:
        yield server
    finally:
        server.script("stop")
