"""Topic declarations: name, key, partitions and cleanup policy of each topic."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Topic:
    """One Kafka topic of the system (see docs/architecture.md)."""

    name: str
    key: str
    partitions: int
    cleanup_policy: str = "delete"
    retention_ms: int = 7 * 24 * 3600 * 1000

    @property
    def dlq(self) -> str:
        """Name of this topic's dead-letter topic."""
        return f"{self.name}.dlq"

    def configs(self) -> dict[str, str]:
        """Topic configs for the admin client."""
        configs = {"cleanup.policy": self.cleanup_policy}
        if self.cleanup_policy == "delete":
            configs["retention.ms"] = str(self.retention_ms)
        return configs


MARKET_BARS = Topic(name="market.bars", key="symbol", partitions=8)
SIM_CLOCK = Topic(name="sim.clock", key="run id", partitions=1)
AGENT_ACTIONS = Topic(name="agent.actions", key="symbol", partitions=8)
PORTFOLIO_EVENTS = Topic(name="portfolio.events", key="portfolio id", partitions=1, retention_ms=-1)
"""The ledger is the event store: kept forever, one partition for one total order."""
AGENT_MODELS = Topic(name="agent.models", key="agent id", partitions=1, cleanup_policy="compact")
MONITOR_ALERTS = Topic(name="monitor.alerts", key="agent id", partitions=1)
MONITOR_ORDERS = Topic(name="monitor.orders", key="symbol", partitions=8)
"""The decisions and order outcomes (fills and skips) of portfolio.events in the partition
of their symbol, in ledger order, as batches (``ledger_records``): the collapse detector's
input, partitioned like its table."""

TOPICS: tuple[Topic, ...] = (
    MARKET_BARS,
    SIM_CLOCK,
    AGENT_ACTIONS,
    PORTFOLIO_EVENTS,
    AGENT_MODELS,
    MONITOR_ALERTS,
    MONITOR_ORDERS,
)
"""Every topic, in the order of the event-flow table."""


def dead_letter_topics() -> tuple[Topic, ...]:
    """One dead-letter topic per consumed topic, keyed like its source."""
    return tuple(
        Topic(name=t.dlq, key=t.key, partitions=1)
        for t in (
            MARKET_BARS,
            SIM_CLOCK,
            AGENT_ACTIONS,
            PORTFOLIO_EVENTS,
            AGENT_MODELS,
            MONITOR_ALERTS,
            MONITOR_ORDERS,
        )
    )


ALL_TOPICS: tuple[Topic, ...] = TOPICS + dead_letter_topics()


def _homes() -> dict[type, frozenset[str]]:
    from core import events as ev  # the domain's types; topics are the wire's

    ledger = frozenset({PORTFOLIO_EVENTS.name})
    orders = frozenset({PORTFOLIO_EVENTS.name, MONITOR_ORDERS.name})
    clock = frozenset({SIM_CLOCK.name})
    return {
        ev.BarClosed: frozenset({MARKET_BARS.name}),
        ev.ReplayStarted: clock,
        ev.ServiceReady: clock,
        ev.StepCompleted: clock,
        ev.ReplayFinished: clock,
        ev.ActionDecided: frozenset({AGENT_ACTIONS.name}),
        ev.PortfolioOpened: ledger,
        ev.DecisionRecorded: orders,
        ev.DecisionMissed: ledger,
        ev.ActionLate: ledger,
        ev.OrderFilled: orders,
        ev.OrderSkipped: orders,
        ev.AccountMarked: ledger,
        ev.PortfolioClosed: ledger,
        ev.ModelPublished: frozenset({AGENT_MODELS.name}),
        ev.CollapseDetected: frozenset({MONITOR_ALERTS.name}),
        ev.CollapseResolved: frozenset({MONITOR_ALERTS.name}),
    }


HOMES = _homes()
"""The topics each event type may be read from (the event-flow table)."""


def misplaced(event: object, topic: str) -> str | None:
    """Why ``event`` must not be taken from ``topic`` (it belongs elsewhere), or None."""
    homes = HOMES.get(type(event))
    if homes is None or topic in homes:
        return None
    where = ", ".join(sorted(homes))
    return f"a {type(event).__name__} does not belong on {topic} (it goes on {where})"
