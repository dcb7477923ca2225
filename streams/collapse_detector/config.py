"""Collapse-detector settings (``TRADINGBOT_DETECTOR_*``); thresholds default to the plan's."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.collapse import CollapseThresholds

_PLAN = CollapseThresholds()


class DetectorConfig(BaseSettings):
    """Where the detector reads, how it windows and when it alerts."""

    model_config = SettingsConfigDict(
        env_prefix="TRADINGBOT_DETECTOR_", frozen=True, extra="ignore"
    )

    bootstrap: str = Field("127.0.0.1:9092", validation_alias="TRADINGBOT_BOOTSTRAP")
    """Kafka bootstrap servers (the shared ``TRADINGBOT_BOOTSTRAP``)."""
    run_id: str = ""
    """Only watch this run (empty: every run)."""
    app_id: str = "tradingbot-collapse-detector"
    """Faust application id: the consumer group and the prefix of its changelog topics."""
    window: PositiveInt = 1000
    """Count window: the last N actions of each agent."""
    span_days: PositiveFloat = 365.0
    """Event-time window: actions older than this (replay time) leave the window too."""
    metrics_port: int = Field(9104, ge=0, le=65535)
    """Port of /metrics on 127.0.0.1 (0: none)."""
    web_port: int = Field(0, ge=0, le=65535)
    """Port of faust's web server on 127.0.0.1 (0: none, the default)."""
    dominance: float = _PLAN.dominance
    diversity: float = _PLAN.diversity
    diversity_critical: float = _PLAN.diversity_critical
    repeats: PositiveInt = _PLAN.repeats
    trade_frequency: float = _PLAN.trade_frequency
    min_actions: PositiveInt = _PLAN.min_actions

    def thresholds(self) -> CollapseThresholds:
        """The core value these settings describe."""
        return CollapseThresholds(
            dominance=self.dominance,
            diversity=self.diversity,
            diversity_critical=self.diversity_critical,
            repeats=self.repeats,
            trade_frequency=self.trade_frequency,
            min_actions=self.min_actions,
        )

    @property
    def span_ns(self) -> int:
        """The event-time window in nanoseconds."""
        return int(self.span_days * 86_400 * 1_000_000_000)
