"""Competitor and floor measurements for the environment benchmark table.

Run with ``.venv/bin/python -m benchmarks.competitors`` after installing the
benchmark-only packages (``make bench`` does it: the ``bench`` extra of
pyproject.toml, and FinRL without its dependencies)::

    .venv/bin/pip install -c constraints.txt -e '.[bench]'
    .venv/bin/pip install --no-deps finrl==0.3.7

Entries:

1. ``gym_anytrading``: ``gym.make("stocks-v0")`` of gym-anytrading 2.0.0 (one
   symbol, its bundled GOOGL daily bars, window 30), both as ``gym.make``
   returns it (wrappers included, what users get) and ``env.unwrapped``.
2. ``finrl``: FinRL 0.3.7's ``StockTradingEnv`` on the same 143-symbol daily
   bars as our environment, with one indicator column (MACD).
3. ``numpy_floor``: the least arithmetic a 143-symbol portfolio step with
   observations can do in plain numpy: a floor, not an environment.

Every entry draws its random actions before the clock starts and times the
step loop only; episode resets inside the timed loop are included in the
time and counted in ``Measurement.resets``.

The third-party packages are imported inside the functions (``importlib``)
because they are not project dependencies: importing this module, and type
checking it, needs only numpy and the project.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

CHECK_EVERY = 64
"""Steps between two looks at the clock (a look costs far less than a step)."""
FINRL_ENV_FILE = Path("meta") / "env_stock_trading" / "env_stocktrading.py"


@dataclass(frozen=True)
class Measurement:
    """Steps taken in ``seconds`` of wall time by an environment of ``symbols`` symbols."""

    name: str
    steps: int
    seconds: float
    symbols: int
    resets: int = 0
    """Episode resets inside the timed loop (their time is included)."""

    @property
    def steps_per_s(self) -> float:
        """Environment steps per second."""
        return self.steps / self.seconds

    @property
    def symbol_steps_per_s(self) -> float:
        """Steps per second times symbols: bars processed per second."""
        return self.steps * self.symbols / self.seconds


def gym_anytrading(seconds: float = 3.0, seed: int = 0) -> list[Measurement]:
    """gym-anytrading 2.0.0 ``stocks-v0``: wrapped (``gym.make``) and unwrapped.

    The registration's defaults are used: the bundled GOOGL data frame,
    ``window_size=30`` and ``frame_bound=(30, len(df))``. ``import
    gym_anytrading`` is what registers ``stocks-v0`` with gymnasium.
    """
    gym = importlib.import_module("gymnasium")
    importlib.import_module("gym_anytrading")  # registers stocks-v0 and forex-v0
    env = gym.make("stocks-v0")
    actions = np.random.default_rng(seed).integers(0, 2, size=1 << 16).tolist()
    try:
        wrapped = time_episodic(
            "gym-anytrading stocks-v0 (gym.make)", env, actions, seconds, seed, 1
        )
        unwrapped = time_episodic(
            "gym-anytrading stocks-v0 (unwrapped)", env.unwrapped, actions, seconds, seed, 1
        )
    finally:
        env.close()
    return [wrapped, unwrapped]


def finrl(
    frame_close: FloatArray,
    frame_open: FloatArray,
    frame_high: FloatArray,
    frame_low: FloatArray,
    frame_volume: FloatArray,
    symbols: Sequence[str],
    dates: Sequence[str],
    seconds: float = 3.0,
    seed: int = 0,
) -> Measurement:
    """FinRL 0.3.7 ``StockTradingEnv`` on ``[T, n]`` daily bars (no gaps).

    ``dates`` are ``'YYYY-MM-DD'`` strings, one per row. The env module is
    loaded by file path from the installed ``finrl`` package without running
    ``finrl/__init__.py`` (which imports broker and data clients).
    """
    pd = importlib.import_module("pandas")
    steps_total, n = frame_close.shape
    if len(symbols) != n or len(dates) != steps_total:
        raise ValueError(
            f"{n} columns, {len(symbols)} symbols; {steps_total} rows, {len(dates)} dates"
        )
    if not all(np.isfinite(a).all() for a in (frame_close, frame_open, frame_high, frame_low)):
        raise ValueError("FinRL's env needs a bar for every symbol at every date (no NaN)")
    indicators = ["macd"]
    closes = pd.DataFrame(frame_close)
    macd = (
        closes.ewm(span=12, adjust=False).mean() - closes.ewm(span=26, adjust=False).mean()
    ).to_numpy()
    # Long format sorted by date then tic, indexed by day number: what FinRL's
    # data_split produces and what ``df.loc[day, :]`` in the env expects.
    df = pd.DataFrame(
        {
            "date": np.repeat(np.asarray(dates, dtype=object), n),
            "tic": np.tile(np.asarray(symbols, dtype=object), steps_total),
            "open": frame_open.reshape(-1),
            "high": frame_high.reshape(-1),
            "low": frame_low.reshape(-1),
            "close": frame_close.reshape(-1),
            "volume": frame_volume.reshape(-1),
            "macd": macd.reshape(-1),
        },
        index=np.repeat(np.arange(steps_total), n),
    )
    module = _load_finrl_env_module()
    env = module.StockTradingEnv(
        df=df,
        stock_dim=n,
        hmax=100,
        initial_amount=100_000,
        num_stock_shares=[0] * n,
        buy_cost_pct=[0.001] * n,
        sell_cost_pct=[0.001] * n,
        reward_scaling=1e-4,
        state_space=1 + 2 * n + len(indicators) * n,
        action_space=n,
        tech_indicator_list=indicators,
        make_plots=False,
        print_verbosity=10**9,
    )
    rng = np.random.default_rng(seed)
    actions = list(rng.uniform(-1.0, 1.0, size=(4096, n)).astype(np.float32))
    return time_episodic(
        f"FinRL 0.3.7 StockTradingEnv ({n} symbols)", env, actions, seconds, seed, n
    )


def numpy_floor(
    open_: FloatArray,
    close: FloatArray,
    window: int = 10,
    n_features: int = 6,
    seconds: float = 3.0,
    seed: int = 0,
) -> Measurement:
    """Plain-numpy floor of a portfolio step over ``[T, n]`` bars, with observations.

    Before the clock: a random observation tensor ``[T, n, window * n_features]``
    (float32) and random actions in ``[-1, 1]``. Per step: buy with a fraction of
    cash or sell a fraction of the position at the open (fee and slippage), mark
    at the close, reward the log change of equity, and return the step's
    observation rows with three account features per symbol (``[n, F + 3]``
    float32). No checks beyond keeping cash non-negative.
    """
    steps_total, n = close.shape
    if steps_total < 2:
        raise ValueError("need at least two bars")
    rng = np.random.default_rng(seed)
    obs_all = rng.standard_normal((steps_total, n, window * n_features), dtype=np.float32)
    actions = list(rng.uniform(-1.0, 1.0, size=(4096, n)))
    open_f = np.ascontiguousarray(open_, dtype=np.float64)
    close_f = np.ascontiguousarray(close, dtype=np.float64)
    fee, slippage, initial_cash = 0.001, 0.0005, 100_000.0
    buy_scale = 1.0 / n  # a full buy everywhere spends all the cash

    cash = initial_cash
    positions = np.zeros(n)
    equity = initial_cash
    t = 0
    steps = resets = 0
    reward_sum = 0.0
    last_obs: npt.NDArray[np.float32] | None = None
    n_actions = len(actions)
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(CHECK_EVERY):
            action = actions[steps % n_actions]
            price = open_f[t]
            buy_frac = np.maximum(action, 0.0) * buy_scale
            sell_frac = np.maximum(-action, 0.0)
            buy_value = buy_frac * cash
            buy_qty = buy_value / (price * (1.0 + slippage))
            sell_qty = sell_frac * positions
            sell_value = sell_qty * price * (1.0 - slippage)
            cash = max(
                cash - float(buy_value.sum()) * (1.0 + fee) + float(sell_value.sum()) * (1.0 - fee),
                0.0,
            )
            positions = positions + buy_qty - sell_qty
            value = positions * close_f[t]
            new_equity = cash + float(value.sum())
            reward_sum += float(np.log(new_equity / equity))
            equity = new_equity
            account = np.empty((n, 3))
            account[:, 0] = value / equity
            account[:, 1] = cash / equity
            account[:, 2] = close_f[t] / price - 1.0
            last_obs = np.concatenate((obs_all[t], account), axis=1, dtype=np.float32)
            steps += 1
            t += 1
            if t == steps_total:
                t = 0
                cash, positions, equity = initial_cash, np.zeros(n), initial_cash
                resets += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    if last_obs is None or not np.isfinite(reward_sum):
        raise RuntimeError("numpy floor produced no observation or a non-finite reward")
    return Measurement(f"numpy floor with observations ({n} symbols)", steps, elapsed, n, resets)


def time_episodic(
    name: str, env: Any, actions: Sequence[Any], seconds: float, seed: int, symbols: int
) -> Measurement:
    """Step ``env`` with ``actions`` (cycled) for about ``seconds``; reset when done."""
    env.reset(seed=seed)
    steps = resets = 0
    n_actions = len(actions)
    step = env.step
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(CHECK_EVERY):
            _, _, terminated, truncated, _ = step(actions[steps % n_actions])
            steps += 1
            if terminated or truncated:
                env.reset()
                resets += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    return Measurement(name, steps, now - start, symbols, resets)


def _load_finrl_env_module() -> ModuleType:
    """``finrl/meta/env_stock_trading/env_stocktrading.py``, loaded by path."""
    spec = importlib.util.find_spec("finrl")
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise ModuleNotFoundError("finrl is not installed: pip install --no-deps finrl==0.3.7")
    path = Path(next(iter(locations))) / FINRL_ENV_FILE
    env_spec = importlib.util.spec_from_file_location("finrl_env_stocktrading", path)
    if env_spec is None or env_spec.loader is None:
        raise ModuleNotFoundError(f"cannot load {path}")
    module = importlib.util.module_from_spec(env_spec)
    env_spec.loader.exec_module(module)
    return module


def iso_dates(timestamps_ns: npt.NDArray[np.int64]) -> list[str]:
    """UTC ``'YYYY-MM-DD'`` of int nanosecond timestamps."""
    return [str(d) for d in np.datetime_as_string(timestamps_ns.astype("datetime64[ns]"), "D")]


def format_table(rows: Sequence[Measurement]) -> str:
    """A plain-text table of measurements."""
    header = (
        f"{'environment':<46} {'symbols':>7} {'steps':>9} {'seconds':>7} "
        f"{'steps/s':>10} {'symbol-steps/s':>14} {'resets':>6}"
    )
    lines = [header, "-" * len(header)]
    for m in rows:
        lines.append(
            f"{m.name:<46} {m.symbols:>7} {m.steps:>9} {m.seconds:>7.2f} "
            f"{m.steps_per_s:>10,.0f} {m.symbol_steps_per_s:>14,.0f} {m.resets:>6}"
        )
    return "\n".join(lines)


def main() -> None:
    """Measure every entry on the bytetheory 143-symbol universe and print the table."""
    from rl_agents.data import BYTETHEORY, DEFAULT_UNIVERSE, load_bars, universe

    frame = universe(load_bars(BYTETHEORY), DEFAULT_UNIVERSE)
    rows: list[Measurement] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows.extend(gym_anytrading())
        rows.append(
            finrl(
                frame.close,
                frame.open,
                frame.high,
                frame.low,
                frame.volume,
                frame.symbols,
                iso_dates(frame.timestamps),
            )
        )
        rows.append(numpy_floor(frame.open, frame.close))
    print(f"{frame.n_symbols} symbols x {frame.n_steps} daily bars ({frame.source})")
    print(format_table(rows))
    ansi = re.compile(r"\x1b\[[0-9;]*m")  # gymnasium colours its warnings
    seen = sorted({ansi.sub("", f"{w.category.__name__}: {w.message}") for w in caught})
    for line in seen:
        print(f"warning: {line}")


if __name__ == "__main__":
    main()
