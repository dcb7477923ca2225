"""The collapse detector: a faust stream processor over the decisions the ledger recorded."""

from streams.topics import MONITOR_ORDERS, PORTFOLIO_EVENTS

INPUTS = (PORTFOLIO_EVENTS.name, MONITOR_ORDERS.name)
"""The topics the detector consumes, each fed by the one before it: the ledger, then
its decisions and order outcomes re-keyed by symbol (where a caught-up group has
committed both in this order, the detector has seen everything the ledger holds)."""
