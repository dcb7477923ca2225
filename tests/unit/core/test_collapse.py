"""Collapse statistics: incremental windows equal a recomputation, thresholds of the plan."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from core.collapse import (
    BINS,
    ActionWindow,
    CollapseStats,
    CollapseThresholds,
    action_bin,
    evaluate,
)

BUY, SELL, HOLD = 1, 2, 0


def longest_run(values: list[object]) -> int:
    best = current = 0
    previous: object = object()
    for v in values:
        current = current + 1 if v == previous else 1
        previous = v
        best = max(best, current)
    return best


def test_sliding_window_statistics_equal_a_recomputation_from_scratch() -> None:
    rng = random.Random(7)
    for _ in range(200):
        size = rng.randint(1, 40)
        window = ActionWindow(size)
        history: list[tuple[float, int]] = []
        for step in range(rng.randint(1, 150)):
            raw = rng.choice([-1.0, 0.25, 0.25, 0.0, 1.0, rng.uniform(-1, 1)])
            kind = rng.choice([BUY, SELL, HOLD])
            window.add(raw=raw, kind=kind, step=step)
            history.append((raw, kind))
            last = history[-size:]
            stats = window.stats()
            counts = Counter(action_bin(r) for r, _ in last)
            n = len(last)
            entropy = -sum(c / n * math.log(c / n) for c in counts.values())
            assert stats.actions == n
            assert stats.entropy == pytest.approx(entropy, abs=1e-9)
            assert stats.diversity == pytest.approx(entropy / math.log(BINS), abs=1e-9)
            assert stats.dominant_bin == pytest.approx(max(counts.values()) / n)
            assert stats.repeat_run == longest_run([r for r, _ in last])
            assert stats.kind_run == longest_run([k for _, k in last])


def test_always_buy_small_has_no_diversity_and_full_dominance() -> None:
    window = ActionWindow(1000)
    for step in range(60):
        window.add(raw=0.25, kind=BUY, step=step)

    stats = window.stats()

    assert stats.diversity == 0.0
    assert stats.dominant_bin == 1.0
    assert stats.dominant_kind == 1.0
    assert stats.kind_shares == (1.0, 0.0, 0.0)
    assert stats.repeat_run == 60


def test_uniform_actions_have_diversity_one() -> None:
    window = ActionWindow(BINS)
    for b in range(BINS):
        window.add(raw=-1.0 + (b + 0.5) * 2.0 / BINS, kind=HOLD, step=b)

    assert window.stats().diversity == pytest.approx(1.0)


def test_actions_older_than_the_event_time_span_leave_the_window() -> None:
    window = ActionWindow(1000, span_ns=10)
    for t in range(30):
        window.add(raw=0.0, kind=HOLD, step=t, event_time=t)

    # Kept: event times 19..29 (the newest minus at most the span).
    assert window.stats().actions == 11


def test_trade_frequency_counts_only_settled_actions() -> None:
    window = ActionWindow(1000)
    for step in range(4):
        window.add(raw=0.5, kind=BUY, step=step)
    window.mark_filled(0)

    # Step 0 filled; steps 1..3 still wait for their orders.
    assert window.stats().settled == 1
    assert window.stats().trade_frequency == 1.0

    window.settle_through(2)  # the ledger marked step 3: orders of 0..2 are known

    assert window.stats().settled == 3
    assert window.stats().trade_frequency == pytest.approx(1 / 3)


def test_a_fill_for_an_action_that_left_the_window_is_ignored() -> None:
    window = ActionWindow(2)
    for step in range(3):
        window.add(raw=0.5, kind=BUY, step=step)

    assert window.mark_filled(0) is False
    assert window.mark_filled(2) is True


def stats(**changes: object) -> CollapseStats:
    healthy: dict[str, object] = {
        "actions": 200, "entropy": 2.5, "diversity": 0.85, "dominant_bin": 0.2,
        "dominant_kind": 0.45, "kind_shares": (0.45, 0.35, 0.2), "repeat_run": 1,
        "kind_run": 12, "trade_frequency": 0.3, "saturation": 0.0, "settled": 200,
    }  # fmt: skip
    healthy.update(changes)
    return CollapseStats(**healthy)  # type: ignore[arg-type]


def test_a_healthy_window_breaches_nothing() -> None:
    assert all(b is None for b in evaluate(stats(), CollapseThresholds()).values())


@pytest.mark.parametrize(
    ("changes", "metric", "severity"),
    [
        ({"dominant_bin": 0.61}, "dominance", "warning"),
        ({"diversity": 0.29}, "entropy", "warning"),
        ({"diversity": 0.19}, "entropy", "critical"),
        ({"repeat_run": 6}, "repeats", "warning"),
        ({"trade_frequency": 0.04}, "trade_frequency", "warning"),
    ],
)
def test_each_plan_threshold_raises_its_alert(
    changes: dict[str, object], metric: str, severity: str
) -> None:
    breach = evaluate(stats(**changes), CollapseThresholds())[metric]

    assert breach is not None and breach.severity == severity


@pytest.mark.parametrize(
    ("changes", "metric"),
    [
        ({"dominant_bin": 0.60}, "dominance"),
        ({"diversity": 0.30}, "entropy"),
        ({"repeat_run": 5}, "repeats"),
        ({"trade_frequency": 0.05}, "trade_frequency"),
    ],
)
def test_a_value_on_the_threshold_is_not_a_breach(changes: dict[str, object], metric: str) -> None:
    assert evaluate(stats(**changes), CollapseThresholds())[metric] is None


def test_nothing_is_judged_before_the_window_holds_min_actions() -> None:
    collapsed = stats(actions=49, diversity=0.0, dominant_bin=1.0, repeat_run=49)

    assert all(b is None for b in evaluate(collapsed, CollapseThresholds()).values())


def test_trade_frequency_waits_for_enough_settled_actions() -> None:
    window = stats(trade_frequency=0.0, settled=49)

    assert evaluate(window, CollapseThresholds())["trade_frequency"] is None


def test_the_window_knows_the_step_of_its_newest_action() -> None:
    window = ActionWindow(10)
    assert window.last_step is None

    window.add(raw=0.1, kind=BUY, step=4)

    assert window.last_step == 4
