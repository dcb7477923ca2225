"""Model rollout as events: publish a checkpoint to ``agent.models``, roll back by event.

``agent.models`` is compacted and keyed by agent id ("fleet" for every
agent): its latest record per key is the model the symbol agents serve, and
each record names the one it replaced.
"""

from __future__ import annotations

import time

from core.events import ModelPublished
from services import kafka
from streams.topics import AGENT_MODELS

FLEET = "fleet"


class ModelError(RuntimeError):
    """A publish or rollback that cannot be done."""


async def current(bootstrap: str, agent_id: str = FLEET) -> ModelPublished | None:
    """The model ``agent_id`` serves now (None: the baseline, never published)."""
    found = await kafka.read_topic(
        bootstrap,
        AGENT_MODELS.name,
        keep=lambda e: isinstance(e, ModelPublished) and e.agent_id == agent_id,
    )
    latest = [e for e in found if isinstance(e, ModelPublished)]
    return latest[-1] if latest else None


async def _send(bootstrap: str, event: ModelPublished) -> None:
    client = kafka.producer(bootstrap, "tradingbot-models")
    await kafka.start(client, bootstrap)
    try:
        await kafka.publish(client, AGENT_MODELS.name, event.agent_id, [event])
    finally:
        await kafka.stop(client)


async def publish(
    bootstrap: str, checkpoint: str, version: str, agent_id: str = FLEET
) -> ModelPublished:
    """Announce ``checkpoint`` (of ``version``) as the model of ``agent_id``."""
    before = await current(bootstrap, agent_id)
    event = ModelPublished(
        event_id=f"models/{agent_id}/{version}/{time.time_ns()}",
        cause_id="operator",
        run_id="",
        event_time=time.time_ns(),
        agent_id=agent_id,
        checkpoint=checkpoint,
        version=version,
        previous_checkpoint=before.checkpoint if before else "",
        previous_version=before.version if before else "baseline",
        reason="publish",
    )
    await _send(bootstrap, event)
    return event


async def rollback(bootstrap: str, agent_id: str = FLEET) -> ModelPublished:
    """Return ``agent_id`` to the model before the current one, by event."""
    now = await current(bootstrap, agent_id)
    if now is None:
        raise ModelError(f"{agent_id} serves the baseline: there is nothing to roll back")
    event = ModelPublished(
        event_id=f"models/{agent_id}/rollback/{time.time_ns()}",
        cause_id=now.event_id,
        run_id="",
        event_time=time.time_ns(),
        agent_id=agent_id,
        checkpoint=now.previous_checkpoint,
        version=now.previous_version,
        previous_checkpoint=now.checkpoint,
        previous_version=now.version,
        reason="rollback",
    )
    await _send(bootstrap, event)
    return event
