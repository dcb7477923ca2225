"""Settings shared by every service, read from the environment (``TRADINGBOT_*``)."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.rules import TradingRules

_DEFAULT = TradingRules()


class KafkaConfig(BaseSettings):
    """Where the broker is and which run and portfolio a service works for."""

    model_config = SettingsConfigDict(env_prefix="TRADINGBOT_", frozen=True, extra="ignore")

    bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers."""
    run_id: str = "local"
    """Id of the replay run; every event carries it and services ignore other runs."""
    portfolio_id: str = "main"
    """Key of the portfolio's events on portfolio.events."""


class RulesConfig(BaseSettings):
    """The trading rules (``TRADINGBOT_RULES_*``); defaults come from ``core.rules``."""

    model_config = SettingsConfigDict(env_prefix="TRADINGBOT_RULES_", frozen=True, extra="ignore")

    initial_cash: PositiveFloat = _DEFAULT.initial_cash
    hold_threshold: float = Field(_DEFAULT.hold_threshold, gt=0, lt=1)
    smoothing_window: PositiveInt = _DEFAULT.smoothing_window
    max_position_pct: float = Field(_DEFAULT.max_position_pct, gt=0, le=1)
    min_trade_value: float = Field(_DEFAULT.min_trade_value, ge=0)
    fee_rate: float = Field(_DEFAULT.fee_rate, ge=0, lt=0.1)
    slippage_rate: float = Field(_DEFAULT.slippage_rate, ge=0, lt=0.1)
    lot_size: float = Field(_DEFAULT.lot_size, ge=0)
    periods_per_year: PositiveInt | None = _DEFAULT.periods_per_year
    """Unset: derived from the bars' interval (core.annualisation)."""

    def rules(self) -> TradingRules:
        """The core value these settings describe."""
        return TradingRules(**self.model_dump())
