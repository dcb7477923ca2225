"""Performance measures against hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from core.performance import max_drawdown, sharpe_ratio, step_returns, total_return, win_rate


def test_step_returns_are_simple_returns_between_equity_values() -> None:
    # 100 -> 110: +10%; 110 -> 99: -10%.
    assert step_returns([100.0, 110.0, 99.0]).tolist() == pytest.approx([0.1, -0.1])


def test_step_returns_of_fewer_than_two_values_are_empty() -> None:
    assert step_returns([100.0]).size == 0


def test_step_returns_refuse_non_positive_equity() -> None:
    with pytest.raises(ValueError, match="positive"):
        step_returns([100.0, 0.0, 50.0])


def test_sharpe_is_annualised_mean_over_sample_std() -> None:
    # Mean 0.02 / 3 = 2/300; deviations 1/300, -8/300, 7/300; sample variance
    # (1 + 64 + 49) / 300**2 / 2 = 57 / 300**2, so sd = sqrt(57) / 300 and
    # Sharpe = (2/300) / (sqrt(57)/300) * sqrt(252) = 2 * sqrt(252 / 57) = 4.2053.
    sharpe = sharpe_ratio([0.01, -0.02, 0.03], 252)

    assert sharpe == pytest.approx(2 * math.sqrt(252 / 57))
    assert sharpe == pytest.approx(4.2053, abs=1e-4)


def test_sharpe_uses_the_periods_per_year() -> None:
    # Same returns, hourly-ish annualisation: 2 * sqrt(1638 / 57).
    assert sharpe_ratio([0.01, -0.02, 0.03], 1638) == pytest.approx(2 * math.sqrt(1638 / 57))


def test_sharpe_of_fewer_than_two_returns_is_zero() -> None:
    assert sharpe_ratio([0.05], 252) == 0.0
    assert sharpe_ratio([], 252) == 0.0


def test_sharpe_of_constant_returns_is_zero() -> None:
    assert sharpe_ratio([0.01, 0.01, 0.01], 252) == 0.0


def test_max_drawdown_is_largest_fall_from_a_running_peak() -> None:
    # 120 -> 90 is 30/120 = 25%; 130 -> 104 is 26/130 = 20%.
    assert max_drawdown([100.0, 120.0, 90.0, 130.0, 104.0]) == pytest.approx(0.25)


def test_max_drawdown_of_rising_curve_is_zero() -> None:
    assert max_drawdown([1.0, 2.0, 3.0]) == 0.0
    assert max_drawdown([]) == 0.0


def test_max_drawdown_counts_a_fall_that_never_recovers() -> None:
    # Peak 100 at the start, trough 60 at the end: 40%.
    assert max_drawdown([100.0, 80.0, 90.0, 60.0]) == pytest.approx(0.4)


def test_win_rate_is_share_of_winning_closed_trades() -> None:
    assert win_rate(3, 4) == 0.75


def test_win_rate_without_closed_trades_is_zero() -> None:
    assert win_rate(0, 0) == 0.0


def test_total_return_is_final_over_initial_minus_one() -> None:
    assert total_return(100_000.0, 110_000.0) == pytest.approx(0.1)
    assert total_return(100_000.0, 95_000.0) == pytest.approx(-0.05)
