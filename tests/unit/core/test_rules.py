"""Trading rules: the plan's defaults and refusal of inconsistent settings."""

from __future__ import annotations

from typing import Any

import pytest

from core.rules import RulesError, TradingRules


def test_defaults_are_the_plans_rules() -> None:
    rules = TradingRules()

    assert rules.initial_cash == 100_000.0
    assert rules.hold_threshold == 0.1
    assert rules.smoothing_window == 3
    assert rules.max_position_pct == 0.15
    assert rules.min_trade_value == 25.0
    assert rules.lot_size == 0.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("initial_cash", 0.0),
        ("hold_threshold", 1.0),
        ("hold_threshold", -0.1),
        ("hold_threshold", 0.0),
        ("smoothing_window", 0),
        ("max_position_pct", 0.0),
        ("max_position_pct", 1.5),
        ("min_trade_value", -1.0),
        ("fee_rate", 0.2),
        ("slippage_rate", -0.001),
        ("lot_size", -1.0),
        ("cash_safety", 0.5),
        ("periods_per_year", 0),
    ],
)
def test_inconsistent_rule_is_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(RulesError, match=field):
        TradingRules(**{field: value})
