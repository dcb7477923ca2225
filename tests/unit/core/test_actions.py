"""Action semantics: clipping, the hold zone and moving-average smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from core.actions import (
    ActionError,
    ActionKind,
    SmoothingState,
    classify,
    clip_actions,
    smooth,
    smoothing_for,
)
from core.rules import TradingRules

HOLD, BUY, SELL = ActionKind.HOLD, ActionKind.BUY, ActionKind.SELL


def test_hold_zone_is_strictly_below_threshold() -> None:
    smoothed = [0.0, 0.0999, 0.1, 1.0, -0.0999, -0.1, -1.0]

    kinds = classify(smoothed, 0.1)

    assert kinds.tolist() == [HOLD, HOLD, BUY, BUY, HOLD, SELL, SELL]


def test_hold_threshold_comes_from_the_rules() -> None:
    kinds = classify([0.15, -0.15, 0.25], TradingRules(hold_threshold=0.2).hold_threshold)

    assert kinds.tolist() == [HOLD, HOLD, BUY]


def test_action_kind_labels_are_lower_case_names() -> None:
    assert [k.label for k in ActionKind] == ["hold", "buy", "sell"]


def test_raw_actions_outside_unit_interval_are_clipped() -> None:
    assert clip_actions([-3.0, -1.0, 0.25, 1.0, 7.5]).tolist() == [-1.0, -1.0, 0.25, 1.0, 1.0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_raw_action_is_rejected(bad: float) -> None:
    with pytest.raises(ActionError, match="finite"):
        clip_actions([0.5, bad])


def test_smoothing_is_mean_of_last_three_raw_actions() -> None:
    state = SmoothingState.empty(1, 3)
    smoothed = []
    for raw in (0.3, 0.6, 0.9, -0.6):
        state, out = smooth(state, [raw])
        smoothed.append(float(out[0]))

    # (0.6 + 0.9 - 0.6) / 3 = 0.3: the first action 0.3 has left the window.
    assert smoothed[3] == pytest.approx((0.6 + 0.9 - 0.6) / 3)
    assert state.history[0].tolist() == [0.6, 0.9, -0.6]
    assert state.count.tolist() == [3]


def test_smoothing_averages_fewer_actions_at_the_start() -> None:
    state = SmoothingState.empty(1, 3)
    state, first = smooth(state, [0.3])
    state, second = smooth(state, [0.6])
    state, third = smooth(state, [0.9])

    assert first[0] == pytest.approx(0.3)  # 0.3 / 1, not 0.3 / 3
    assert second[0] == pytest.approx((0.3 + 0.6) / 2)
    assert third[0] == pytest.approx((0.3 + 0.6 + 0.9) / 3)


def test_smoothing_is_per_symbol() -> None:
    state = SmoothingState.empty(2, 3)
    state, _ = smooth(state, [1.0, -1.0])
    state, out = smooth(state, [0.0, 0.5])

    assert out.tolist() == pytest.approx([(1.0 + 0.0) / 2, (-1.0 + 0.5) / 2])


def test_inactive_symbol_holds_and_keeps_its_history() -> None:
    state = SmoothingState.empty(2, 3)
    state, _ = smooth(state, [0.4, 0.4])
    before = state

    state, out = smooth(state, [0.9, 0.9], active=[True, False])

    assert out[1] == 0.0
    assert state.history[1].tolist() == before.history[1].tolist()
    assert state.count.tolist() == [2, 1]
    # The inactive step's 0.9 never enters symbol 1's average: (0.4 + 0.1) / 2.
    state, out = smooth(state, [0.1, 0.1])
    assert out[1] == pytest.approx((0.4 + 0.1) / 2)
    assert out[0] == pytest.approx((0.4 + 0.9 + 0.1) / 3)


def test_raw_actions_are_clipped_before_smoothing() -> None:
    state = SmoothingState.empty(1, 3)
    state, _ = smooth(state, [5.0])
    _, out = smooth(state, [0.0])

    assert out[0] == pytest.approx((1.0 + 0.0) / 2)


def test_window_of_one_passes_raw_actions_through() -> None:
    state = SmoothingState.empty(1, 1)
    state, _ = smooth(state, [0.7])
    _, out = smooth(state, [-0.2])

    assert out[0] == pytest.approx(-0.2)


def test_wrong_number_of_actions_is_rejected() -> None:
    with pytest.raises(ActionError, match="expected 2 actions"):
        smooth(SmoothingState.empty(2, 3), [0.1, 0.2, 0.3])


def test_smoothing_state_is_sized_by_the_rules() -> None:
    state = smoothing_for(TradingRules(smoothing_window=5), 4)

    assert state.history.shape == (4, 5)
    assert state.count.tolist() == [0, 0, 0, 0]


def test_smooth_does_not_mutate_the_previous_state() -> None:
    state = SmoothingState.empty(1, 3)
    smooth(state, [0.5])

    assert state.history.tolist() == [[0.0, 0.0, 0.0]]
    assert state.count.tolist() == [0]
