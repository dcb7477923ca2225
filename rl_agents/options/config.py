"""Settings of the hierarchical options of phase B (YAML section ``options``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionsConfig:
    """The five trading options and their controller; off by default (docs/options.md)."""

    enabled: bool = False
    """The agent's action chooses an option; the option's own policy trades until it ends."""
    timeout: int = 20
    """Steps after which any option ends, whatever its own termination says."""
    flat_share: float = 0.005
    """A position worth at most this share of equity counts as no position (open-long may
    start, close-position has finished)."""
    target_position: float = 0.05
    """Open-long ends once the position is worth more than this share of equity."""
    open_steps: int = 10
    """Open-long ends after this many steps (its buys go 0.3, 0.5, then 0.7 of the cash)."""
    close_fraction: float = 0.4
    """Close-position sells this share of the position per step at break-even."""
    close_pnl_gain: float = 5.0
    """Close-position sells ``close_fraction - close_pnl_gain * unrealised_return`` of the
    position (at least half of close_fraction, at most all): losses exit faster."""
    trend_strength: float = 0.75
    """A strong trend: the last bar's trend_10 is at least this many times the window's mean
    bar range (trend-follow may start; a wait ends when one appears)."""
    trend_fade: float = 0.5
    """Trend-follow ends when the trend strength falls below this share of its strength when
    the option started."""
    trend_add: float = 0.3
    """Trend-follow buys this share of the cash while the trend is at least as strong as when
    it started, and holds otherwise."""
    volatility_ratio: float = 1.25
    """High volatility: the last bar's range is at least this many times the window's mean
    bar range (scalp may start; a wait ends when it appears)."""
    scalp_size: float = 0.3
    """Scalp buys this share of the cash after a falling bar and sells this share of the
    position after a rising one."""
    scalp_steps: int = 5
    """Scalp ends after this many steps."""
    profit_target: float = 0.01
    """Scalp ends once the position's unrealised return reaches this."""

    def __post_init__(self) -> None:
        checks = (
            (self.timeout >= 1, f"options.timeout must be >= 1, got {self.timeout}"),
            (
                0.0 <= self.flat_share < 1.0,
                f"options.flat_share must be in [0, 1), got {self.flat_share}",
            ),
            (
                self.flat_share < self.target_position <= 1.0,
                f"options.target_position must be in (flat_share={self.flat_share}, 1], got "
                f"{self.target_position}",
            ),
            (self.open_steps >= 1, f"options.open_steps must be >= 1, got {self.open_steps}"),
            (
                0.0 < self.close_fraction <= 1.0,
                f"options.close_fraction must be in (0, 1], got {self.close_fraction}",
            ),
            (
                self.close_pnl_gain >= 0.0,
                f"options.close_pnl_gain must be >= 0, got {self.close_pnl_gain}",
            ),
            (
                self.trend_strength > 0.0,
                f"options.trend_strength must be > 0, got {self.trend_strength}",
            ),
            (
                0.0 < self.trend_fade < 1.0,
                f"options.trend_fade must be in (0, 1), got {self.trend_fade}",
            ),
            (
                0.0 <= self.trend_add <= 1.0,
                f"options.trend_add must be in [0, 1], got {self.trend_add}",
            ),
            (
                self.volatility_ratio > 1.0,
                f"options.volatility_ratio must be > 1 (a multiple of the mean range), got "
                f"{self.volatility_ratio}",
            ),
            (
                0.0 < self.scalp_size <= 1.0,
                f"options.scalp_size must be in (0, 1], got {self.scalp_size}",
            ),
            (self.scalp_steps >= 1, f"options.scalp_steps must be >= 1, got {self.scalp_steps}"),
            (
                self.profit_target > 0.0,
                f"options.profit_target must be > 0, got {self.profit_target}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
