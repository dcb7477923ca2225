"""Refusals: what a service or command says in one line before it exits non-zero.

The process boundary (``services.runner``, the CLI) prints the message of a
``Refusal`` without a traceback and exits with its code.
"""

from __future__ import annotations


class Refusal(RuntimeError):
    """A condition the user must fix (the message says how); exits with ``exit_code``."""

    exit_code = 2


class PortInUse(Refusal):
    """A port the service needs is taken by another process."""


class RunClosed(Refusal):
    """The run is already closed: its ledger ended; a new run id is needed."""

    exit_code = 3
