"""Synthetic bars: seeded, on the exchange calendar, with the statistics the model promises."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest

from core.annualisation import annualisation
from core.bars import NEW_YORK
from core.synthetic import SynthConfig, SyntheticBars, synthesize


@pytest.fixture(scope="module")
def month() -> SyntheticBars:
    """Ten symbols, a month of minute bars."""
    return synthesize(SynthConfig(symbols=10, bars=21 * 390, seed=7))


def test_the_same_seed_gives_the_same_bars_and_another_seed_others() -> None:
    a = synthesize(SynthConfig(symbols=4, bars=2000, seed=1))
    b = synthesize(SynthConfig(symbols=4, bars=2000, seed=1))
    c = synthesize(SynthConfig(symbols=4, bars=2000, seed=2))

    for name in ("timestamps", "open", "high", "low", "close", "volume", "present"):
        assert np.array_equal(getattr(a.frame, name), getattr(b.frame, name), equal_nan=True)
    assert not np.allclose(a.frame.close[-1], c.frame.close[-1])


def test_any_number_of_symbols_and_bars_is_generated() -> None:
    bars = synthesize(SynthConfig(symbols=143, bars=50, seed=0, missing_probability=0.0))

    assert bars.frame.n_symbols == 143
    assert bars.frame.n_steps == 50
    assert bars.frame.symbols[:2] == ("SYN000", "SYN001")
    assert list(bars.frame.symbols) == sorted(bars.frame.symbols)


def test_minute_bars_fall_in_the_new_york_session_on_weekdays(month: SyntheticBars) -> None:
    frame = month.frame
    times = [datetime.fromtimestamp(int(t) / 1e9, NEW_YORK) for t in frame.timestamps]

    assert times[0].isoformat() == "2024-01-02T09:30:00-05:00"
    assert all(t.weekday() < 5 for t in times)
    assert min(t.time() for t in times).isoformat() == "09:30:00"
    assert max(t.time() for t in times).isoformat() == "15:59:00"
    assert annualisation(frame.timestamps).periods_per_year == 390 * 252


def test_daily_bars_are_one_a_weekday_at_midnight_new_york() -> None:
    frame = synthesize(SynthConfig(symbols=2, bars=10, interval="1d", start=date(2024, 3, 8))).frame
    days = [datetime.fromtimestamp(int(t) / 1e9, NEW_YORK) for t in frame.timestamps]

    assert [d.date().isoformat() for d in days[:3]] == ["2024-03-08", "2024-03-11", "2024-03-12"]
    assert {d.time().isoformat() for d in days} == {"00:00:00"}
    assert annualisation(frame.timestamps).periods_per_year == 252


def test_prices_are_positive_and_bars_consistent(month: SyntheticBars) -> None:
    f = month.frame
    p = f.present

    assert np.all(f.low[p] > 0)
    assert np.all(f.low[p] <= np.minimum(f.open[p], f.close[p]))
    assert np.all(f.high[p] >= np.maximum(f.open[p], f.close[p]))
    assert np.all(np.isnan(f.close[~p]))


def test_volume_is_whole_shares_busier_at_the_open_and_in_turbulence(month: SyntheticBars) -> None:
    bars = month
    f = bars.frame
    minute = (f.timestamps - f.timestamps[0]) // 60_000_000_000 % (24 * 60)
    opening, midday = minute < 15, (minute >= 180) & (minute < 195)

    assert np.all(f.volume[f.present] >= 0)
    assert np.all(f.volume[f.present] == np.round(f.volume[f.present]))
    assert np.nanmedian(f.volume[opening]) > 1.5 * np.nanmedian(f.volume[midday])
    names = [r.name for r in bars.regimes]
    calm, turbulent = bars.regime == names.index("calm"), bars.regime == names.index("turbulent")
    if calm.any() and turbulent.any():
        assert np.nanmedian(f.volume[turbulent]) > np.nanmedian(f.volume[calm])


def test_regimes_switch_and_turbulence_moves_prices_more_than_calm() -> None:
    bars = synthesize(SynthConfig(symbols=20, bars=120 * 390, seed=3))
    returns = np.diff(np.log(bars.frame.close), axis=0)
    regime = bars.regime[1:]
    names = [r.name for r in bars.regimes]

    switches = int(np.count_nonzero(np.diff(bars.regime)))
    spread = {
        name: float(np.nanstd(returns[regime == k]))
        for k, name in enumerate(names)
        if np.count_nonzero(regime == k) > 1000
    }
    assert switches >= 5
    assert set(np.unique(bars.regime).tolist()) == set(range(len(names)))  # every regime
    assert spread["turbulent"] > 2 * spread["calm"]
    assert spread["bear"] > spread["calm"]


def test_sessions_open_with_a_gap_from_the_last_close(month: SyntheticBars) -> None:
    bars = month
    f = bars.frame
    first = np.r_[False, bars.session[1:] != bars.session[:-1]]
    inside = np.r_[False, bars.session[1:] == bars.session[:-1]]
    both = f.present[1:] & f.present[:-1]
    jump = np.abs(np.log(f.open[1:] / f.close[:-1]))

    assert np.nanmedian(jump[first[1:, None] & both]) > 0
    assert np.nanmax(jump[inside[1:, None] & both]) == 0.0  # within a session: no gap


def test_missing_bars_and_halts_leave_gaps_in_the_data() -> None:
    f = synthesize(SynthConfig(symbols=10, bars=21 * 390, seed=7, halt_probability=0.05)).frame
    missing = ~f.present
    runs = np.diff(np.r_[np.zeros((1, f.n_symbols), bool), missing].astype(np.int8), axis=0)

    assert 0 < missing.mean() < 0.05
    assert f.complete_symbols() != list(f.symbols)  # some symbol lacks some bar
    assert np.count_nonzero(runs == 1) > 0  # gaps start somewhere
    longest = max(_longest_true_run(missing[:, j]) for j in range(f.n_symbols))
    assert longest >= 5  # a halt, not only single missing bars


def _longest_true_run(mask: np.ndarray) -> int:
    best = run = 0
    for value in mask.tolist():
        run = run + 1 if value else 0
        best = max(best, run)
    return best


def test_without_gaps_every_symbol_has_every_bar() -> None:
    config = SynthConfig(symbols=5, bars=3000, missing_probability=0.0, halt_probability=0.0)

    assert synthesize(config).frame.present.all()


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"interval": "2min"}, "interval '2min' is not one of"),
        ({"symbols": 0}, "at least 1"),
        ({"missing_probability": 1.0}, "missing_probability must be in"),
        ({"halt_bars": 0.5}, "halt_bars must be at least 1"),
    ],
)
def test_impossible_settings_are_refused_with_the_reason(
    settings: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        SynthConfig(**settings)  # type: ignore[arg-type]
