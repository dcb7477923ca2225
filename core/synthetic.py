"""Seeded synthetic bars: regime-switching geometric Brownian motion with volume and gaps.

For scale runs and tests: any number of symbols and bars on an exchange
calendar (weekdays; intraday bars in the 09:30-16:00 New York session, daily
bars at midnight New York, as the loaders read dates), the same frame for the
same settings and seed. The model (docs/data.md, "Synthetic bars"):

- **regimes**: one market regime at a time follows a Markov chain over
  sessions' bars; a regime lasts a geometric number of bars with a mean of
  ``mean_days`` sessions, then another one (drawn uniformly) follows. Each
  has an annualised drift, volatility and volume multiplier (``REGIMES``);
- **prices**: a symbol's log return per bar is ``beta`` times the market's
  GBM increment ``(mu - sigma^2 / 2) dt + sigma sqrt(dt) z`` in the current
  regime plus its own increment with volatility ``idio`` (times the square
  root of the regime's volatility over the calm one's), ``dt`` in years of
  ``bars per session x 252`` bars. Prices are GBM, hence positive; they are
  rounded to 4 decimals (at least 0.0001);
- **price gaps**: a session's first bar opens away from the last close by an
  overnight return (a quarter of a day's variance) and, with probability
  ``jump_probability`` per symbol and session, a jump (news);
- **high and low** lie outside open and close by a half-normal share of the
  bar's volatility, so ``low <= min(open, close) <= max(open, close) <= high``;
- **volume**: a symbol's base volume, times the regime's multiplier, an
  intraday U shape (busier at the open and the close), ``1 + 2 |z|`` for the
  bar's return ``z`` in standard deviations (big moves trade more) and
  log-normal noise; whole shares;
- **missing bars** (data gaps): a symbol is absent at a bar with probability
  ``missing_probability``, and halted for a geometric number of bars (mean
  ``halt_bars``) from a session's bar with probability ``halt_probability``
  per session; the price path runs on underneath, so it reopens with a gap.
  Timestamps where no symbol has a bar are dropped (as a loader would see
  the file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import numpy as np
import numpy.typing as npt

from core.bars import NEW_YORK, BarFrame

SESSION_OPEN = time(9, 30)
SESSION_MINUTES = 390
"""The regular New York session, 09:30-16:00."""
SESSIONS_PER_YEAR = 252
INTERVALS = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "1h": 60, "1d": SESSION_MINUTES}
"""Bar intervals in minutes; ``1d`` is one bar a session."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Regime:
    """One state of the market."""

    name: str
    drift: float
    """Annualised drift of the market's GBM."""
    volatility: float
    """Annualised volatility of the market's GBM."""
    volume: float
    """Multiplier of every symbol's volume."""
    mean_days: float
    """Mean duration in sessions."""


REGIMES = (
    Regime(name="calm", drift=0.08, volatility=0.12, volume=0.8, mean_days=20.0),
    Regime(name="bull", drift=0.60, volatility=0.18, volume=1.0, mean_days=10.0),
    Regime(name="bear", drift=-0.80, volatility=0.35, volume=1.5, mean_days=6.0),
    Regime(name="turbulent", drift=0.0, volatility=0.80, volume=2.5, mean_days=3.0),
)
"""The default regimes; the first is the reference of the idiosyncratic volatility."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthConfig:
    """What to generate; the same config gives the same bars."""

    symbols: int = 143
    bars: int = 21 * SESSION_MINUTES
    """Timestamps to generate (before dropping those where every symbol is absent)."""
    interval: str = "1min"
    seed: int = 0
    start: date = date(2024, 1, 2)
    """First session (moved on to a weekday)."""
    regimes: tuple[Regime, ...] = field(default=REGIMES)
    missing_probability: float = 0.001
    halt_probability: float = 0.01
    halt_bars: float = 20.0
    jump_probability: float = 0.01
    jump_size: float = 0.04
    """Standard deviation of a jump's log return."""

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"interval {self.interval!r} is not one of {', '.join(INTERVALS)}")
        if self.symbols < 1 or self.bars < 1:
            raise ValueError("symbols and bars must be at least 1")
        if not self.regimes:
            raise ValueError("at least one regime is needed")
        for p in ("missing_probability", "halt_probability", "jump_probability"):
            if not 0.0 <= getattr(self, p) < 1.0:
                raise ValueError(f"{p} must be in [0, 1)")
        if self.halt_bars < 1.0:
            raise ValueError("halt_bars must be at least 1")

    @property
    def bars_per_session(self) -> int:
        """Bars of one session at this interval (the last one may be short, as 15:30-16:00)."""
        return math.ceil(SESSION_MINUTES / INTERVALS[self.interval])


@dataclass(frozen=True, slots=True, kw_only=True)
class SyntheticBars:
    """Generated bars and the regimes they were drawn in."""

    frame: BarFrame
    regime: npt.NDArray[np.int64]
    """Index into ``regimes`` of the regime at each of the frame's timestamps."""
    regimes: tuple[Regime, ...]
    session: npt.NDArray[np.int64]
    """Session number of each timestamp (0: the first)."""


def synthesize(config: SynthConfig) -> SyntheticBars:
    """Generate the bars ``config`` describes."""
    rng = np.random.default_rng(config.seed)
    n, t_total = config.symbols, config.bars
    per_session = config.bars_per_session
    dt = 1.0 / (per_session * SESSIONS_PER_YEAR)
    timestamps, session = _calendar(config.start, t_total, config.interval)
    first_bar = np.r_[True, session[1:] != session[:-1]]

    regime = _regime_path(rng, config.regimes, t_total, per_session)
    mu = np.array([r.drift for r in config.regimes])[regime]
    sigma = np.array([r.volatility for r in config.regimes])[regime]
    calm = config.regimes[0].volatility

    start_price = np.exp(rng.normal(math.log(50.0), 0.8, n)).clip(5.0, 2000.0)
    beta = rng.uniform(0.6, 1.4, n)
    idio = rng.uniform(0.15, 0.45, n)
    base_volume = np.exp(rng.normal(math.log(2_000.0 * INTERVALS[config.interval]), 0.7, n))

    market = (mu - 0.5 * sigma**2) * dt + sigma * math.sqrt(dt) * rng.standard_normal(t_total)
    own_sigma = idio[None, :] * np.sqrt(sigma / calm)[:, None]
    z = rng.standard_normal((t_total, n))
    bar_sigma = np.sqrt((beta[None, :] * sigma[:, None]) ** 2 + own_sigma**2) * math.sqrt(dt)
    returns = beta[None, :] * market[:, None] - 0.5 * own_sigma**2 * dt
    returns += own_sigma * math.sqrt(dt) * z

    day_sigma = bar_sigma * math.sqrt(per_session)
    overnight = 0.5 * day_sigma * rng.standard_normal((t_total, n))
    jumps = config.jump_size * rng.standard_normal((t_total, n))
    jumps *= rng.random((t_total, n)) < config.jump_probability
    gaps = np.where(first_bar[:, None], overnight + jumps, 0.0)
    gaps[0] = 0.0

    log_close = np.log(start_price)[None, :] + np.cumsum(gaps + returns, axis=0)
    log_open = np.empty_like(log_close)
    log_open[0] = np.log(start_price)
    log_open[1:] = log_close[:-1] + gaps[1:]  # a bar opens at the last close, or gaps from it
    wick = bar_sigma * 0.5
    log_high = np.maximum(log_open, log_close) + wick * np.abs(rng.standard_normal((t_total, n)))
    log_low = np.minimum(log_open, log_close) - wick * np.abs(rng.standard_normal((t_total, n)))

    minute = (np.arange(t_total) % per_session + 0.5) / per_session
    u_shape = 1.0 + 1.5 * (2.0 * minute - 1.0) ** 2 if per_session > 1 else np.ones(t_total)
    regime_volume = np.array([r.volume for r in config.regimes])[regime]
    noise = np.exp(rng.normal(-0.045, 0.3, (t_total, n)))
    size = 1.0 + 2.0 * np.abs((returns + gaps) / bar_sigma)
    volume = np.rint(base_volume[None, :] * (regime_volume * u_shape)[:, None] * size * noise)

    present = rng.random((t_total, n)) >= config.missing_probability
    present &= ~_halts(rng, first_bar, n, config.halt_probability, config.halt_bars)

    def price(log_price: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.where(present, np.maximum(np.round(np.exp(log_price), 4), 1e-4), np.nan)

    keep = present.any(axis=1)
    frame = BarFrame(
        symbols=_symbol_names(n),
        timestamps=timestamps[keep],
        open=price(log_open)[keep],
        high=price(log_high)[keep],
        low=price(log_low)[keep],
        close=price(log_close)[keep],
        volume=np.where(present, volume, np.nan)[keep],
        present=present[keep],
        source=f"synthetic:{config.symbols}x{config.bars}:{config.interval}:seed={config.seed}",
    ).validate()
    return SyntheticBars(
        frame=frame, regime=regime[keep], regimes=config.regimes, session=session[keep]
    )


def _symbol_names(n: int) -> tuple[str, ...]:
    """``SYN000``, ``SYN001``, ... (sorted as text, as the loaders sort symbols)."""
    width = max(3, len(str(n - 1)))
    return tuple(f"SYN{j:0{width}d}" for j in range(n))


def _calendar(
    start: date, bars: int, interval: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """UTC nanoseconds and session number of ``bars`` bars from the first weekday at ``start``."""
    minutes = INTERVALS[interval]
    per_session = math.ceil(SESSION_MINUTES / minutes)
    sessions = -(-bars // per_session)
    opens: list[int] = []
    day = start
    while len(opens) < sessions:
        if day.weekday() < 5:
            at = datetime.combine(day, SESSION_OPEN if interval != "1d" else time(0, 0), NEW_YORK)
            opens.append(int(at.timestamp()) * 1_000_000_000)
        day += timedelta(days=1)
    offsets = np.arange(per_session, dtype=np.int64) * minutes * 60 * 1_000_000_000
    stamps = (np.array(opens, dtype=np.int64)[:, None] + offsets[None, :]).ravel()[:bars]
    session = np.repeat(np.arange(sessions, dtype=np.int64), per_session)[:bars]
    return stamps, session


def _regime_path(
    rng: np.random.Generator, regimes: tuple[Regime, ...], bars: int, per_session: int
) -> npt.NDArray[np.int64]:
    """Regime index per bar: geometric durations, the next regime drawn among the others."""
    path = np.empty(bars, dtype=np.int64)
    at, current = 0, int(rng.integers(len(regimes)))
    while at < bars:
        mean = max(1.0, regimes[current].mean_days * per_session)
        length = int(rng.geometric(1.0 / mean))
        path[at : at + length] = current
        at += length
        if len(regimes) > 1:
            current = (current + 1 + int(rng.integers(len(regimes) - 1))) % len(regimes)
    return path


def _halts(
    rng: np.random.Generator,
    first_bar: npt.NDArray[np.bool_],
    n: int,
    probability: float,
    mean_bars: float,
) -> npt.NDArray[np.bool_]:
    """Where a symbol is halted: runs of bars that start in a session with ``probability``."""
    bars = first_bar.shape[0]
    halted = np.zeros((bars, n), dtype=np.bool_)
    session_starts = np.flatnonzero(first_bar)
    ends = np.r_[session_starts[1:], bars]
    starts = rng.random((session_starts.shape[0], n)) < probability
    for s, j in zip(*np.nonzero(starts), strict=True):
        begin = int(rng.integers(session_starts[s], ends[s]))
        length = int(rng.geometric(1.0 / mean_bars))
        halted[begin : begin + length, j] = True
    return halted
