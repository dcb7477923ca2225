"""Observation features: hand-computed rows, gaps, and train/serve parity of a window."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from core.features import (
    ACCOUNT_FEATURES,
    CLIP,
    FEATURE_NAMES,
    FILL_LIMIT,
    HISTORY,
    LOOKBACK,
    N_BAR_FEATURES,
    account_features,
    bar_features,
    observe_window,
)

F = {name: i for i, name in enumerate(FEATURE_NAMES)}
Bars = dict[str, npt.NDArray[Any]]


def one_symbol(rows: list[tuple[float, float, float, float, float] | None]) -> Bars:
    """Bars [T, 1] from (o, h, l, c, v) tuples; None is a missing bar."""
    arr = np.array([r if r is not None else (np.nan,) * 5 for r in rows], dtype=np.float64)
    present = np.array([[r is not None] for r in rows])
    o, h, lo, c, v = (arr[:, [k]] for k in range(5))
    return {"open_px": o, "high": h, "low": lo, "close": c, "volume": v, "present": present}


def random_bars(seed: int, steps: int, n: int, absent_share: float) -> Bars:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (steps, n)), axis=0))
    open_px = close * np.exp(rng.normal(0.0, 0.01, (steps, n)))
    high = np.maximum(open_px, close) * rng.uniform(1.0, 1.02, (steps, n))
    low = np.minimum(open_px, close) * rng.uniform(0.98, 1.0, (steps, n))
    volume = rng.uniform(1e3, 1e6, (steps, n))
    present = rng.random((steps, n)) >= absent_share
    present[:25, 0] = False  # symbol 0 is listed late
    bars = {"open_px": open_px, "high": high, "low": low, "close": close, "volume": volume}
    for values in bars.values():
        values[~present] = np.nan
    return {**bars, "present": present}


def rows(bars: Bars, start: int, stop: int) -> Bars:
    return {k: v[start:stop] for k, v in bars.items()}


def features(bars: Bars) -> npt.NDArray[np.float64]:
    return bar_features(**bars)


def test_first_bar_has_only_range_and_body() -> None:
    out = features(one_symbol([(10.0, 11.0, 9.0, 10.5, 100.0)]))[0, 0]

    assert out[F["log_return"]] == 0.0
    assert out[F["gap"]] == 0.0
    assert out[F["range"]] == pytest.approx(math.log(11.0 / 9.0))
    assert out[F["body"]] == pytest.approx(math.log(10.5 / 10.0))
    assert out[F["volume_change"]] == 0.0
    assert out[F["trend_10"]] == 0.0


def test_second_bar_features_by_hand() -> None:
    out = features(
        one_symbol(
            [
                (10.0, 11.0, 9.0, 10.5, 100.0),
                (10.8, 12.0, 10.6, 11.5, 300.0),
            ]
        )
    )[1, 0]

    assert out[F["log_return"]] == pytest.approx(math.log(11.5 / 10.5))
    assert out[F["gap"]] == pytest.approx(math.log(10.8 / 10.5))
    assert out[F["range"]] == pytest.approx(math.log(12.0 / 10.6))
    assert out[F["body"]] == pytest.approx(math.log(11.5 / 10.8))
    assert out[F["volume_change"]] == pytest.approx(math.log(301.0) - math.log(101.0))
    # Mean close of the window so far: (10.5 + 11.5) / 2 = 11.
    assert out[F["trend_10"]] == pytest.approx(math.log(11.5 / 11.0))


def test_trend_uses_the_last_lookback_plus_one_closes() -> None:
    closes = [float(c) for c in range(1, 16)]  # 1 .. 15
    out = features(one_symbol([(c, c, c, c, 1.0) for c in closes]))

    # Row 13 (close 14) averages its own and the 10 previous closes, 4 .. 14: mean 9.
    assert LOOKBACK == 10
    assert out[13, 0, F["trend_10"]] == pytest.approx(math.log(14.0 / 9.0))


def test_missing_bar_carries_the_last_close_forward() -> None:
    out = features(
        one_symbol(
            [
                (10.0, 10.0, 10.0, 10.0, 50.0),
                None,
                (12.0, 12.0, 12.0, 12.0, 70.0),
            ]
        )
    )[:, 0]

    gap_row = out[1]
    for name in ("log_return", "gap", "range", "body", "volume_change"):
        assert gap_row[F[name]] == 0.0, name
    # After the gap, return and gap are against the carried close 10.
    assert out[2, F["log_return"]] == pytest.approx(math.log(12.0 / 10.0))
    assert out[2, F["gap"]] == pytest.approx(math.log(12.0 / 10.0))
    assert out[2, F["volume_change"]] == pytest.approx(math.log(71.0) - math.log(51.0))


def test_every_feature_is_zero_before_a_symbols_first_bar() -> None:
    out = features(one_symbol([None, None, (5.0, 6.0, 4.0, 5.5, 1.0)]))

    assert out[:2].tolist() == np.zeros((2, 1, N_BAR_FEATURES)).tolist()
    assert out[2, 0, F["log_return"]] == 0.0


def test_features_are_clipped() -> None:
    out = features(one_symbol([(1.0, 1.0, 1.0, 1.0, 1.0), (1e4, 1e4, 1e4, 1e4, 1.0)]))

    assert out[1, 0, F["log_return"]] == CLIP  # log(1e4) = 9.2
    assert out[1, 0, F["gap"]] == CLIP


def test_no_nan_for_valid_bars_with_gaps() -> None:
    bars = random_bars(seed=1, steps=300, n=5, absent_share=0.3)
    bars["present"][:, 4] = False  # a symbol that never trades

    out = features(bars)

    assert out.shape == (300, 5, N_BAR_FEATURES)
    assert np.all(np.isfinite(out))
    assert np.all(np.abs(out) <= CLIP)


def test_window_block_gives_exactly_the_rows_of_the_whole_history() -> None:
    window = 10
    block = window + HISTORY
    bars = random_bars(seed=2, steps=150, n=4, absent_share=0.2)
    full = features(bars)
    checked = 0
    for stop in range(block, 151):
        start = stop - block
        local = features(rows(bars, start, stop))[-window:]
        assert np.array_equal(local, full[stop - window : stop]), stop
        checked += 1
    assert checked > 100


def test_window_block_of_gapless_bars_equals_the_whole_history_for_every_symbol() -> None:
    window = 10
    bars = random_bars(seed=3, steps=80, n=3, absent_share=0.0)
    bars = rows(bars, 25, 80)  # after symbol 0's listing: no gaps at all
    full = features(bars)

    for stop in range(window + HISTORY, 56):
        local = features(rows(bars, stop - window - HISTORY, stop))[-window:]
        assert np.array_equal(local, full[stop - window : stop]), stop


def test_window_block_starting_inside_a_gap_equals_the_whole_history() -> None:
    window = 10
    bars = one_symbol(
        [(10.0 + i, 11.0 + i, 9.0 + i, 10.5 + i, 100.0) for i in range(5)]
        + [None] * 3
        + [(20.0 + i, 21.0 + i, 19.0 + i, 20.5 + i, 100.0) for i in range(30)]
    )
    full = features(bars)
    start = 6  # inside the gap at rows 5..7

    local = features(rows(bars, start, start + window + HISTORY))[-window:]

    assert np.array_equal(local, full[start + HISTORY : start + HISTORY + window])


def test_account_features_by_hand() -> None:
    out = account_features(
        quantity=np.array([10.0, 0.0]),
        close=np.array([50.0, np.nan]),
        cost=np.array([400.0, 0.0]),
        cash=500.0,
        equity=1_000.0,
    )

    # Position 10 * 50 = 500 of 1_000; cash 500 of 1_000; unrealised 500 / 400 - 1.
    np.testing.assert_allclose(out, [[0.5, 0.5, 0.25], [0.0, 0.5, 0.0]])
    assert len(ACCOUNT_FEATURES) == out.shape[1]


def test_observe_window_shape_dtype_and_content() -> None:
    window = 10
    bars = random_bars(seed=4, steps=60, n=3, absent_share=0.1)
    block = rows(bars, 60 - window - HISTORY, 60)

    obs = observe_window(
        **block,
        window=window,
        quantity=np.array([10.0, 0.0, 0.0]),
        cost=np.array([450.0, 0.0, 0.0]),
        cash=9_500.0,
        equity=10_000.0,
    )

    assert obs.shape == (3, window * N_BAR_FEATURES + len(ACCOUNT_FEATURES))
    assert obs.dtype == np.float32
    expected = features(block)[-window:].transpose(1, 0, 2).reshape(3, -1).astype(np.float32)
    assert np.array_equal(obs[:, : window * N_BAR_FEATURES], expected)
    assert obs[1, -2] == pytest.approx(0.95)  # cash share 9_500 / 10_000


def test_close_is_carried_over_at_most_fill_limit_missing_bars() -> None:
    bars = one_symbol(
        [(10.0, 11.0, 9.0, 10.0, 100.0)] * 3
        + [None] * (FILL_LIMIT + 2)
        + [(20.0, 21.0, 19.0, 20.0, 100.0)] * 3
    )
    out = features(bars)[:, 0, :]

    after_gap = 3 + FILL_LIMIT + 2
    # Within the limit the carried close gives zero returns; past it the symbol is unknown,
    # so its first bar after the gap has no previous close: return and gap are 0, not log 2.
    assert np.all(out[3 : 3 + FILL_LIMIT] == 0.0)
    assert out[after_gap, F["log_return"]] == 0.0
    assert out[after_gap, F["gap"]] == 0.0
    assert np.all(np.isfinite(out))
