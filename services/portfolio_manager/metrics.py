"""Portfolio-manager metrics (docs/metrics.md), updated from the events it writes."""

from __future__ import annotations

from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from core.annualisation import annualisation
from core.events import AccountMarked, Event, OrderFilled, OrderSkipped
from core.execution import ClipReason, SkipReason
from core.ledger import PortfolioState
from core.performance import sharpe_ratio, win_rate

ROLLING_RETURNS = 20
"""Step returns in the rolling Sharpe ratio."""


class PortfolioMetrics:
    """The ledger as gauges and counters."""

    def __init__(self, registry: CollectorRegistry, periods_per_year: int | None) -> None:
        self.given_periods = periods_per_year
        """None: derived from the marks' bar times, as the run's summary derives it."""
        self.periods_per_year = annualisation([], periods_per_year).periods_per_year
        self._marked_at: list[int] = []
        self.orders = Counter(
            "tradingbot_portfolio_orders", "Fills by side", ("side",), registry=registry
        )
        self.skips = Counter(
            "tradingbot_portfolio_skips", "Skipped orders by gate", ("reason",), registry=registry
        )
        self.clips = Counter(
            "tradingbot_portfolio_clips", "Clipped orders by gate", ("reason",), registry=registry
        )
        for side in ("buy", "sell"):
            self.orders.labels(side)
        for reason in SkipReason:
            if reason != SkipReason.NONE:
                self.skips.labels(reason.label)
        for clip in (ClipReason.POSITION_CAP, ClipReason.INSUFFICIENT_CASH):
            self.clips.labels(*clip.labels())

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=registry)

        self.equity = gauge("tradingbot_portfolio_equity_dollars", "Equity at the last mark")
        self.cash = gauge("tradingbot_portfolio_cash_dollars", "Cash")
        self.exposure = gauge("tradingbot_portfolio_exposure_ratio", "Positions / equity")
        self.drawdown = gauge("tradingbot_portfolio_drawdown_ratio", "Fall from the equity peak")
        self.sharpe = gauge(
            "tradingbot_portfolio_rolling_sharpe_ratio",
            "Sharpe of the last 20 returns, annualised with tradingbot_portfolio_periods_per_year",
        )
        self.periods = gauge(
            "tradingbot_portfolio_periods_per_year",
            "Periods per year the Sharpe is annualised with (from the bar interval unless set)",
        )
        self.periods.set(self.periods_per_year)
        self.win_rate = gauge("tradingbot_portfolio_win_rate_ratio", "Winning closing trades")
        self.realized = gauge("tradingbot_portfolio_realized_pnl_dollars", "Realised P&L")
        self.unrealized = Gauge(
            "tradingbot_portfolio_unrealized_pnl_dollars",
            "Unrealised P&L per held symbol",
            ("symbol",),
            registry=registry,
        )
        self._equity: deque[float] = deque(maxlen=ROLLING_RETURNS + 1)
        self._peak = 0.0
        self._held: set[str] = set()

    def observe(self, events: list[Event], state: PortfolioState) -> None:
        """Update from the events just written and the state they led to."""
        for event in events:
            if isinstance(event, OrderFilled):
                self.orders.labels(event.side).inc()
                for reason in event.clipped_by:
                    self.clips.labels(reason).inc()
            elif isinstance(event, OrderSkipped):
                self.skips.labels(event.reason).inc()
            elif isinstance(event, AccountMarked):
                self._mark(event)
        self.win_rate.set(win_rate(state.winning_trades, state.closed_trades))
        self.realized.set(state.realized_pnl)

    def _mark(self, marked: AccountMarked) -> None:
        self.equity.set(marked.equity)
        self.cash.set(marked.cash)
        self.exposure.set((marked.equity - marked.cash) / marked.equity)
        self._peak = max(self._peak, marked.equity)
        self.drawdown.set((self._peak - marked.equity) / self._peak)
        self._equity.append(marked.equity)
        curve = np.array(self._equity)
        self._marked_at.append(marked.event_time)
        marks = len(self._marked_at)
        if self.given_periods is None and marks >= 3 and marks & (marks - 1) == 0:
            # Derived again at 4, 8, 16, ... marks: the summary's rule, at amortised O(1).
            self.periods_per_year = annualisation(self._marked_at).periods_per_year
            self.periods.set(self.periods_per_year)
        self.sharpe.set(sharpe_ratio(curve[1:] / curve[:-1] - 1.0, self.periods_per_year))
        held = {h.symbol for h in marked.holdings}
        for h in marked.holdings:
            self.unrealized.labels(h.symbol).set(h.unrealized_pnl)
        for symbol in self._held - held:
            self.unrealized.remove(symbol)
        self._held = held
