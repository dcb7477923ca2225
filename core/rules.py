"""The trading rules of the plan, in one frozen value."""

from __future__ import annotations

from dataclasses import dataclass


class RulesError(ValueError):
    """Raised when a set of trading rules is inconsistent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingRules:
    """Rules shared by training (gymnasium envs) and serving (portfolio manager).

    Defaults are the plan's (docs/trading-rules.md explains each rule).
    """

    initial_cash: float = 100_000.0
    """Cash of a new portfolio, in dollars."""
    hold_threshold: float = 0.1
    """Smoothed actions with |a| below this are HOLD."""
    smoothing_window: int = 3
    """Moving average over the last this-many raw actions of a symbol."""
    max_position_pct: float = 0.15
    """No position may exceed this share of equity (marked at the fill bar's open)."""
    min_trade_value: float = 25.0
    """Orders whose notional is below this many dollars are skipped."""
    fee_rate: float = 0.001
    """Commission as a share of notional (0.001 = 10 bps), charged on buys and sells."""
    slippage_rate: float = 0.0005
    """Adverse price move on every fill: buys pay open*(1+s), sells get open*(1-s)."""
    lot_size: float = 0.0
    """Quantities are rounded down to a multiple of this; 0 means fractional shares."""
    cash_safety: float = 1e-9
    """Share of cash never allocated when buys are scaled, so rounding cannot overdraw."""
    periods_per_year: int | None = None
    """Bars per year, used to annualise Sharpe; None: derived from the bars' interval
    (``core.annualisation``: 252 for daily equities, 105,120 for 5-minute bars around the clock)."""

    def __post_init__(self) -> None:
        checks = [
            (self.initial_cash > 0, "initial_cash must be > 0"),
            (0.0 < self.hold_threshold < 1.0, "hold_threshold must be in (0, 1)"),
            (self.smoothing_window >= 1, "smoothing_window must be >= 1"),
            (0.0 < self.max_position_pct <= 1.0, "max_position_pct must be in (0, 1]"),
            (self.min_trade_value >= 0, "min_trade_value must be >= 0"),
            (0.0 <= self.fee_rate < 0.1, "fee_rate must be in [0, 0.1)"),
            (0.0 <= self.slippage_rate < 0.1, "slippage_rate must be in [0, 0.1)"),
            (self.lot_size >= 0, "lot_size must be >= 0"),
            (0.0 <= self.cash_safety < 0.01, "cash_safety must be in [0, 0.01)"),
            (
                self.periods_per_year is None or self.periods_per_year >= 1,
                "periods_per_year must be >= 1 (or None: derived from the bars)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise RulesError(message)
