"""Run the collapse detector worker: ``python -m streams.collapse_detector``."""

import os
import signal
import sys
from types import FrameType


def _stopped_while_starting(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM or SIGINT before faust installs its own handlers: a clean stop, exit 0.

    Nothing the worker has done by then needs undoing (its changelog topics
    are created idempotently), so a supervisor's stop of a starting worker is
    one line, not a death by signal or a traceback from the middle of an import.
    """
    print(
        f"collapse-detector: stopped by {signal.Signals(signum).name} before the worker started",
        file=sys.stderr,
        flush=True,
    )
    os._exit(0)


for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, _stopped_while_starting)

from streams.collapse_detector.app import main  # noqa: E402 - after the handlers, on purpose

main()
