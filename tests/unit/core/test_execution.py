"""Simulated execution at the next bar's open: every rule of docs/trading-rules.md."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from core.actions import ActionKind
from core.execution import ClipReason, Execution, SkipReason, execute, fill_prices
from core.rules import TradingRules

NAN = float("nan")
RULES = TradingRules()  # fee 0.001, slippage 0.0005, cap 15%, min trade $25
UNCAPPED = TradingRules(max_position_pct=1.0)


def run(
    target: list[float],
    *,
    cash: float,
    open_px: list[float],
    position: list[float] | None = None,
    last_close: list[float] | None = None,
    rules: TradingRules = RULES,
) -> Execution:
    n = len(target)
    return execute(
        target=np.array(target),
        position=np.zeros(n) if position is None else np.array(position, dtype=np.float64),
        cash=cash,
        open_px=np.array(open_px, dtype=np.float64),
        last_close=np.array(open_px if last_close is None else last_close, dtype=np.float64),
        rules=rules,
    )


def test_fill_is_at_next_open_with_slippage_and_fee() -> None:
    result = run([0.1], cash=100_000.0, open_px=[50.0], rules=UNCAPPED)

    # Buy price 50 * 1.0005 = 50.025; the buy spends 0.1 * 100_000 = 10_000 with the fee,
    # so notional = 10_000 / 1.001 and fee = 0.001 * notional.
    notional = 10_000.0 / 1.001
    assert result.price[0] == pytest.approx(50.025)
    assert result.quantity[0] == pytest.approx(notional / 50.025)
    assert result.notional[0] == pytest.approx(notional)
    assert result.fee[0] == pytest.approx(0.001 * notional)
    assert result.cash_after == pytest.approx(90_000.0)
    assert result.kind[0] == ActionKind.BUY
    assert result.skip[0] == SkipReason.NONE
    assert result.clip[0] == ClipReason.NONE


def test_sell_fill_gets_open_less_slippage_and_pays_fee() -> None:
    result = run([-0.5], cash=1_000.0, open_px=[40.0], position=[100.0])

    # Sells half of 100 shares at 40 * 0.9995 = 39.98: notional 50 * 39.98 = 1999,
    # fee 1.999, cash 1000 + 1999 - 1.999 = 2997.001.
    assert result.quantity[0] == pytest.approx(-50.0)
    assert result.price[0] == pytest.approx(39.98)
    assert result.notional[0] == pytest.approx(1_999.0)
    assert result.fee[0] == pytest.approx(1.999)
    assert result.cash_after == pytest.approx(2_997.001)
    assert result.kind[0] == ActionKind.SELL


def test_fill_prices_move_against_the_trader() -> None:
    buy, sell = fill_prices(np.array([100.0]), RULES)

    assert buy[0] == pytest.approx(100.05)
    assert sell[0] == pytest.approx(99.95)


def test_buy_spends_its_action_share_of_cash_fees_included() -> None:
    result = run([0.3], cash=10_000.0, open_px=[20.0], rules=UNCAPPED)

    # a * cash = 0.3 * 10_000 = 3_000 = notional + fee.
    assert result.notional[0] + result.fee[0] == pytest.approx(3_000.0)
    assert result.cash_after == pytest.approx(7_000.0)


def test_sell_is_its_action_share_of_the_position() -> None:
    result = run([-0.25], cash=0.0, open_px=[30.0], position=[80.0])

    assert result.quantity[0] == pytest.approx(-20.0)  # 0.25 * 80
    assert result.requested_quantity[0] == pytest.approx(-20.0)


def test_sell_of_whole_position_leaves_nothing() -> None:
    result = run([-1.0], cash=0.0, open_px=[30.0], position=[80.0])

    assert result.quantity[0] == -80.0


def test_hold_zone_target_places_no_order() -> None:
    result = run([0.05, -0.0999], cash=10_000.0, open_px=[10.0, 10.0], position=[0.0, 5.0])

    assert result.kind.tolist() == [ActionKind.HOLD, ActionKind.HOLD]
    assert result.quantity.tolist() == [0.0, 0.0]
    assert result.skip.tolist() == [SkipReason.NONE, SkipReason.NONE]
    assert result.cash_after == 10_000.0


def test_buy_that_would_exceed_15_percent_is_capped_with_reason() -> None:
    result = run([0.5], cash=100_000.0, open_px=[100.0])

    # Asked: 50_000 / 1.001 / 100.05 = 499.25 shares; room: 0.15 * 100_000 / 100 = 150 shares.
    assert result.requested_quantity[0] == pytest.approx(50_000.0 / 1.001 / 100.05)
    assert result.quantity[0] == pytest.approx(150.0)
    assert result.clip[0] == ClipReason.POSITION_CAP
    assert result.skip[0] == SkipReason.NONE


def test_position_cap_counts_the_held_position_marked_at_open() -> None:
    # Equity at the open: 90_000 cash + 100 shares * 100 = 100_000; cap 15_000;
    # held 10_000, so room for (15_000 - 10_000) / 100 = 50 shares.
    result = run([0.5], cash=90_000.0, open_px=[100.0], position=[100.0], last_close=[80.0])

    assert result.quantity[0] == pytest.approx(50.0)
    assert result.clip[0] == ClipReason.POSITION_CAP


def test_position_cap_marks_symbols_without_a_bar_at_their_last_close() -> None:
    # Equity: 85_000 + 100 * 100 (B, no bar: last close) = 95_000; A's room 0.15 * 95_000 / 50.
    result = run(
        [1.0, 0.0],
        cash=85_000.0,
        open_px=[50.0, NAN],
        position=[0.0, 100.0],
        last_close=[49.0, 100.0],
    )

    assert result.quantity[0] == pytest.approx(0.15 * 95_000.0 / 50.0)


def test_buy_of_position_already_at_cap_is_skipped_with_reason() -> None:
    # Equity 85_000 + 150 * 100 = 100_000; the position is exactly 15%.
    result = run([0.8], cash=85_000.0, open_px=[100.0], position=[150.0])

    assert result.quantity[0] == 0.0
    assert result.skip[0] == SkipReason.AT_POSITION_CAP
    assert result.cash_after == 85_000.0


def test_sell_without_position_is_skipped_no_shorting() -> None:
    result = run([-0.5], cash=10_000.0, open_px=[100.0])

    assert result.quantity[0] == 0.0
    assert result.skip[0] == SkipReason.NO_POSITION
    assert result.cash_after == 10_000.0


def test_sell_below_min_trade_value_is_skipped_with_reason() -> None:
    # Half of 1 share at 40 * 0.9995: 0.5 * 39.98 = 19.99 < 25.
    result = run([-0.5], cash=0.0, open_px=[40.0], position=[1.0])

    assert result.quantity[0] == 0.0
    assert result.skip[0] == SkipReason.BELOW_MIN_TRADE
    assert result.requested_quantity[0] == pytest.approx(-0.5)
    assert result.cash_after == 0.0


def test_buy_below_min_trade_value_is_skipped_with_reason() -> None:
    # 0.1 * 200 = 20 dollars with the fee: below 25.
    result = run([0.1], cash=200.0, open_px=[10.0])

    assert result.quantity[0] == 0.0
    assert result.skip[0] == SkipReason.BELOW_MIN_TRADE
    assert result.clip[0] == ClipReason.NONE
    assert result.cash_after == 200.0


def test_trade_exactly_at_min_trade_value_fills() -> None:
    rules = TradingRules(max_position_pct=1.0, fee_rate=0.0, slippage_rate=0.0)

    result = run([0.25], cash=100.0, open_px=[5.0], rules=rules)  # 0.25 * 100 = 25

    assert result.notional[0] == pytest.approx(25.0)
    assert result.skip[0] == SkipReason.NONE


def test_symbol_without_bar_does_not_trade() -> None:
    result = run(
        [0.5, -0.5, 0.5],
        cash=10_000.0,
        open_px=[NAN, NAN, 20.0],
        position=[0.0, 10.0, 0.0],
        last_close=[10.0, 10.0, 20.0],
        rules=UNCAPPED,
    )

    assert result.skip.tolist() == [SkipReason.NO_BAR, SkipReason.NO_BAR, SkipReason.NONE]
    assert result.quantity[:2].tolist() == [0.0, 0.0]
    assert np.isnan(result.price[:2]).all()
    assert result.quantity[2] > 0.0


def test_symbol_without_any_bar_yet_does_not_poison_other_buys() -> None:
    # Regression: B has never traded (last close NaN, no position); A's buy used to be NaN.
    result = run([0.5, 0.0], cash=100_000.0, open_px=[10.0, NAN], last_close=[NAN, NAN])

    assert result.quantity[0] == pytest.approx(0.15 * 100_000.0 / 10.0)
    assert np.isfinite(result.cash_after)
    assert result.cash_after == pytest.approx(100_000.0 - 1_500.0 * 10.005 * 1.001)


def test_buy_without_cash_is_skipped_with_reason() -> None:
    # Equity is the 10_000 held in B, so A has room under the cap, but no cash.
    result = run([0.5, 0.0], cash=0.0, open_px=[10.0, 10.0], position=[0.0, 1_000.0])

    assert result.skip[0] == SkipReason.NO_CASH
    assert result.quantity[0] == 0.0


def test_sells_fund_buys_of_the_same_step() -> None:
    result = run([-1.0, 0.5], cash=0.0, open_px=[10.0, 20.0], position=[100.0, 0.0], rules=UNCAPPED)

    # Proceeds: 100 * 9.995 = 999.5 less the 0.9995 fee = 998.5005; the buy spends half.
    assert result.notional[1] + result.fee[1] == pytest.approx(0.5 * 998.5005)
    assert result.cash_after == pytest.approx(0.5 * 998.5005)


def test_buys_competing_for_cash_are_scaled_pro_rata() -> None:
    result = run([0.6, 0.6, 0.3], cash=10_000.0, open_px=[10.0, 20.0, 50.0], rules=UNCAPPED)

    # They ask for (0.6 + 0.6 + 0.3) * 10_000 = 15_000 of 10_000: every buy gets the same
    # factor 10_000 * (1 - 1e-9) / 15_000 of what it asked for.
    factor = 10_000.0 * (1.0 - 1e-9) / 15_000.0
    spent = result.notional + result.fee
    assert spent.tolist() == pytest.approx([6_000 * factor, 6_000 * factor, 3_000 * factor])
    assert (result.quantity / result.requested_quantity).tolist() == pytest.approx([factor] * 3)
    assert all(ClipReason(int(c)) == ClipReason.INSUFFICIENT_CASH for c in result.clip)
    assert 0.0 <= result.cash_after == pytest.approx(10_000.0 * 1e-9, abs=1e-6)


def test_capped_buys_that_still_overdraw_are_scaled_and_carry_both_reasons() -> None:
    rules = TradingRules(max_position_pct=0.5)

    result = run([1.0, 1.0], cash=1_000.0, open_px=[1.0, 1.0], rules=rules)

    # Each is capped at 0.5 * 1_000 / 1 = 500 shares, costing 500 * 1.0005 * 1.001 = 500.75025;
    # together 1_001.5005 > 1_000, so both are scaled by 1_000 * (1 - 1e-9) / 1_001.5005.
    factor = 1_000.0 * (1.0 - 1e-9) / 1_001.5005
    assert result.quantity.tolist() == pytest.approx([500.0 * factor, 500.0 * factor])
    both = ClipReason.POSITION_CAP | ClipReason.INSUFFICIENT_CASH
    assert result.clip.tolist() == [both, both]
    assert result.cash_after >= 0.0


def test_buy_within_cap_and_cash_is_not_clipped() -> None:
    result = run([0.1, 0.1], cash=100_000.0, open_px=[10.0, 20.0])

    # 0.1 * 100_000 = 10_000 each: below the 15_000 cap, and 20_000 of 100_000 cash.
    assert result.clip.tolist() == [ClipReason.NONE, ClipReason.NONE]
    assert result.cash_after == pytest.approx(80_000.0)


def test_buy_quantity_is_rounded_down_to_lot_size() -> None:
    rules = TradingRules(max_position_pct=1.0, lot_size=1.0)

    result = run([0.5], cash=10_000.0, open_px=[33.0], rules=rules)

    # 0.5 * 10_000 / 1.001 / (33 * 1.0005) = 4995.005 / 33.0165 = 151.29 -> 151 shares.
    assert result.quantity[0] == 151.0
    assert result.requested_quantity[0] == pytest.approx(151.288, abs=1e-3)


def test_sell_quantity_is_rounded_down_to_lot_size() -> None:
    rules = TradingRules(lot_size=1.0)

    result = run([-0.55], cash=0.0, open_px=[10.0], position=[10.0], rules=rules)

    assert result.quantity[0] == -5.0  # 0.55 * 10 = 5.5 -> 5


def test_lot_rounding_to_nothing_is_skipped_below_min_trade() -> None:
    rules = TradingRules(lot_size=100.0)

    result = run([-0.5], cash=0.0, open_px=[10.0], position=[100.0], rules=rules)  # 50 -> 0

    assert result.quantity[0] == 0.0
    assert result.skip[0] == SkipReason.BELOW_MIN_TRADE


def test_buy_cap_uses_equity_at_the_open_before_same_step_sells() -> None:
    # Equity at the open is 1_000 * 10 = 10_000 (before the sell fee): room 1_500 / 10 = 150.
    result = run([-1.0, 1.0], cash=0.0, open_px=[10.0, 10.0], position=[1_000.0, 0.0])

    assert result.quantity.tolist() == pytest.approx([-1_000.0, 0.15 * 10_000.0 / 10.0])


def test_skip_and_clip_reasons_have_wire_labels() -> None:
    assert SkipReason.END_OF_DATA.label == "end_of_data"
    assert SkipReason.BELOW_MIN_TRADE.label == "below_min_trade"
    both = ClipReason.POSITION_CAP | ClipReason.INSUFFICIENT_CASH
    assert both.labels() == ("position_cap", "insufficient_cash")
    assert ClipReason.NONE.labels() == ()


def _random_case(
    rng: np.random.Generator,
) -> tuple[dict[str, npt.NDArray[np.float64]], float, TradingRules]:
    n = int(rng.integers(1, 9))
    lot = float(rng.choice([0.0, 1.0, 10.0]))
    rules = TradingRules(
        max_position_pct=float(rng.choice([0.05, 0.15, 0.5, 1.0])),
        lot_size=lot,
        fee_rate=float(rng.uniform(0.0, 0.01)),
        slippage_rate=float(rng.uniform(0.0, 0.01)),
    )
    open_px = rng.uniform(0.5, 500.0, n)
    no_bar = rng.random(n) < 0.2
    open_px[no_bar] = np.nan
    last_close = rng.uniform(0.5, 500.0, n)
    position = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.0, 2_000.0, n))
    if lot:
        position = np.floor(position / lot) * lot
    never_traded = no_bar & (position == 0.0) & (rng.random(n) < 0.5)
    last_close[never_traded] = np.nan
    arrays = {
        "target": rng.uniform(-1.0, 1.0, n),
        "position": position,
        "open_px": open_px,
        "last_close": last_close,
    }
    cash = float(rng.choice([0.0, 10.0, rng.uniform(0.0, 200_000.0)]))
    return arrays, cash, rules


def test_random_steps_never_overdraw_cash_short_or_breach_the_cap() -> None:
    rng = np.random.default_rng(20240611)
    for case in range(2_000):
        arrays, cash, rules = _random_case(rng)
        position, open_px = arrays["position"], arrays["open_px"]
        result = execute(cash=cash, rules=rules, **arrays)
        q = result.quantity
        context = f"case {case}: {arrays}, cash={cash}, {rules}"

        assert np.all(np.isfinite(q)), context
        assert result.cash_after >= 0.0, context
        assert np.all(position + q >= 0.0), context
        assert np.all(q[~np.isfinite(open_px)] == 0.0), context
        mark = np.where(np.isfinite(open_px), open_px, arrays["last_close"])
        equity = cash + float(np.sum(np.where(position > 0, position * mark, 0.0)))
        bought = q > 0
        after = (position + q)[bought] * open_px[bought]
        assert np.all(after <= rules.max_position_pct * equity * (1 + 1e-9) + 1e-9), context
        traded = q != 0
        assert np.all(result.notional[traded] >= rules.min_trade_value), context
        if rules.lot_size:
            lots = np.abs(q) / rules.lot_size
            assert np.allclose(lots, np.round(lots)), context
        flows = np.where(q < 0, result.notional - result.fee, -(result.notional + result.fee))
        assert result.cash_after == pytest.approx(cash + float(flows.sum())), context


def test_single_buy_of_all_cash_is_not_labelled_insufficient_cash() -> None:
    result = run([1.0], cash=1_000.0, open_px=[10.0], rules=UNCAPPED)

    # Only the 1e-9 safety margin is taken off: the buy got what it asked for.
    assert result.quantity[0] == pytest.approx(1_000.0 / 1.001 / 10.005)
    assert result.clip[0] == ClipReason.NONE
    assert result.cash_after >= 0.0


def test_order_that_lot_rounding_takes_to_zero_is_skipped_below_min_trade() -> None:
    rules = TradingRules(max_position_pct=1.0, min_trade_value=0.0, lot_size=1.0)

    # 0.1 * 100 = 10 dollars buys 10 / 1.001 / 500.25 = 0.02 shares: rounded down to 0.
    result = run([0.1], cash=100.0, open_px=[500.0], rules=rules)

    assert result.quantity[0] == 0.0
    assert result.skip[0] == SkipReason.BELOW_MIN_TRADE


def test_target_below_minus_one_sells_at_most_the_whole_position_never_shorts() -> None:
    result = run([-1.5], cash=0.0, open_px=[40.0], position=[10.0])

    assert result.quantity[0] == pytest.approx(-10.0)
