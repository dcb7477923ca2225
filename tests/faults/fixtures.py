"""Fixtures of the fault tests, imported by their modules: a Kafka of their own per module.

The modules import ``*_fixture``; the tests ask for ``fault_broker`` and ``broker``.

The fault tests do not use the session's broker (``kafka_bootstrap``): one of
them stops its broker in the middle of a run, and the hostile records they
send stay on ``agent.models`` (a compacted topic every symbol agent reads from
the start). Each module gets a fresh broker; a test that needs it running
gets it running again if an earlier test left it stopped. (Not a
``conftest.py``: mypy sees one module named ``conftest`` already.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Broker


@pytest.fixture(scope="module", name="fault_broker")
def fault_broker_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A fresh single-node Kafka for this module, stopped when the module is done."""
    broker = Broker(tmp_path_factory.mktemp("fault-kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(name="broker")
def broker_fixture(fault_broker: Broker) -> Broker:
    """The module's broker, running (started again if a test left it stopped)."""
    if not fault_broker.running():
        fault_broker.start()
    return fault_broker
