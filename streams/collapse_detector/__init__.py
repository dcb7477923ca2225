"""The collapse detector: a faust stream processor over the decisions the ledger recorded."""

from streams.topics import MONITOR_ORDERS, PORTFOLIO_EVENTS


def ledger_group(app_id: str) -> str:
    """Name the consumer group of the detector's ledger reader (the faust app is ``app_id``)."""
    return f"{app_id}-ledger"


def inputs(app_id: str) -> tuple[tuple[str, str], ...]:
    """Return the detector's inputs as (consumer group, topic), each fed by the one before it.

    The ledger is re-keyed by symbol onto ``monitor.orders``, which the faust
    app consumes: once both groups have read their topic, in this order, the
    detector has seen everything the ledger holds.
    """
    return ((ledger_group(app_id), PORTFOLIO_EVENTS.name), (app_id, MONITOR_ORDERS.name))
