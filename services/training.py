"""``tradingbot train``: the SAC trainer, with its collapse pause published as an alert.

``rl_agents`` never talks to Kafka. This shell runs the trainer
(``python -m rl_agents.sac``) and, with ``--alerts-bootstrap HOST:PORT``, gives
it an ``on_pause`` hook: when training pauses on an action collapse, a
``CollapseDetected`` goes to ``monitor.alerts``, where the live detector's
alerts are, so the same consumers and dashboards see it::

    tradingbot train --env_type portfolio --symbols 10 --alerts-bootstrap 127.0.0.1:9092

The alert has the shape of the detector's own for the same statistic (metric
``entropy``, value the normalised entropy, severity ``critical``) with
``window="training"``, the run id of the checkpoint's stem and the collapsed
fleet head's symbol as the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from aiokafka.errors import KafkaError

from core.events import CollapseDetected
from rl_agents.sac import __main__ as trainer
from rl_agents.training_monitor import Pause
from services import kafka
from streams.topics import MONITOR_ALERTS

ALERTS_OPTION = "--alerts-bootstrap"
COLLAPSE_METRIC = "entropy"
"""The detector's metric for a normalised entropy (diversity) below its threshold
(``core.collapse.evaluate``)."""
TRAINING_WINDOW = "training"
"""``CollapseDetected.window`` of an alert raised by the trainer."""


def collapse_event(pause: Pause, checkpoint: Path, *, event_time: int) -> CollapseDetected:
    """The alert of a training pause; its run id is the checkpoint's stem.

    Ids derive from the run and the step, so the same run pausing at the same
    step gives the same event id.
    """
    run_id = checkpoint.stem
    cause = f"training/{run_id}/{pause.step}"
    return CollapseDetected(
        event_id=f"{cause}/collapse/{COLLAPSE_METRIC}/critical",
        cause_id=cause,
        run_id=run_id,
        event_time=event_time,
        agent=pause.agent_name,
        metric=COLLAPSE_METRIC,
        severity="critical",
        value=float(pause.diversity),
        threshold=float(pause.threshold),
        window=TRAINING_WINDOW,
        actions=pause.actions,
    )


async def publish_alert(bootstrap: str, event: CollapseDetected) -> None:
    """Send ``event`` to ``monitor.alerts`` under its agent's key and wait for the broker."""
    client = kafka.producer(bootstrap, "tradingbot-trainer")
    try:
        await kafka.start(client, bootstrap)
        await kafka.publish(client, MONITOR_ALERTS.name, event.agent, [event])
    except KafkaError as e:
        raise kafka.BrokerError(f"{bootstrap} refused the alert: {e}") from e
    finally:
        await kafka.stop(client)


def parser() -> argparse.ArgumentParser:
    """The trainer's command line with ``--alerts-bootstrap`` added."""
    p = trainer.parser()
    p.prog = "tradingbot train"
    p.allow_abbrev = False  # the option is stripped by its full name before the trainer runs
    p.add_argument(
        ALERTS_OPTION,
        metavar="HOST:PORT",
        help="publish a CollapseDetected to monitor.alerts on this broker when training pauses",
    )
    from services.cli import with_defaults

    return with_defaults(p)


def without_alerts_option(argv: list[str]) -> list[str]:
    """``argv`` without ``--alerts-bootstrap X`` / ``--alerts-bootstrap=X``."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == ALERTS_OPTION:
            skip = True
        elif not arg.startswith(f"{ALERTS_OPTION}="):
            rest.append(arg)
    return rest


def main(argv: list[str] | None = None) -> int:
    """Train; publish the alert of a pause when a broker is given. Return the exit code:
    the trainer's, or 1 when the alert of a pause could not be published."""
    argv = sys.argv[1:] if argv is None else argv
    bootstrap = parser().parse_args(argv).alerts_bootstrap
    if bootstrap is None:
        return trainer.main(argv)
    failed: list[kafka.BrokerError] = []

    def publish(pause: Pause, checkpoint: Path) -> None:
        event = collapse_event(pause, checkpoint, event_time=time.time_ns())
        try:
            asyncio.run(publish_alert(bootstrap, event))
        except kafka.BrokerError as e:
            failed.append(e)
            return
        print(f"alert: {event.event_id} on {MONITOR_ALERTS.name} ({bootstrap})", file=sys.stderr)

    code = trainer.main(without_alerts_option(argv), on_pause=publish)
    if failed:
        print(
            f"tradingbot train: training paused, but its alert was not published: {failed[0]}",
            file=sys.stderr,
        )
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
