"""Train/serve parity: the offline environment and the streaming pipeline trade identically.

The same 60 trading days of 30 real symbols run twice with the same
deterministic policy: offline through ``PortfolioTradingEnv``, and through
the real Kafka pipeline (replay -> symbol agent serving the policy ->
portfolio manager) in lockstep mode. Every trade (step, symbol, side,
quantity, price, fee) and the final equity must be identical.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from core.events import AccountMarked, DecisionRecorded, Event, OrderFilled, OrderSkipped
from rl_agents.data import load_bars, universe
from rl_agents.envs import EnvConfig, PortfolioTradingEnv
from rl_agents.policies import ProbePolicy
from services.kafka import read_run
from services.pipeline import run_lockstep
from streams.topics import PORTFOLIO_EVENTS

Trade = tuple[int, str, str, float, float, float]
FRAME = universe(load_bars("bytetheory"), 30, start=50, steps=61)


@dataclass
class Offline:
    trades: list[Trade]
    equity: float
    cash: float
    steps: int


def run_offline() -> Offline:
    env = PortfolioTradingEnv(EnvConfig(), frame=FRAME)
    policy = ProbePolicy()
    obs, _ = env.reset(seed=0)
    trades: list[Trade] = []
    steps = 0
    while True:
        obs, _, terminated, truncated, _ = env.step(policy.act(obs))
        steps += 1
        e = env.engine
        filled = np.flatnonzero(e.quantity)
        # The ledger's order: sells first, then buys, each in symbol order.
        for i in sorted(filled, key=lambda i: e.quantity[i] > 0):
            side = "buy" if e.quantity[i] > 0 else "sell"
            trades.append((e.t, FRAME.symbols[i], side, abs(e.quantity[i]), e.price[i], e.fee[i]))
        if terminated or truncated:
            return Offline(trades, env.engine.equity, env.engine.cash, steps)


@pytest.fixture(scope="module")
def streamed(kafka_bootstrap: str) -> list[Event]:
    run_id = "it-parity-30x60"
    asyncio.run(
        run_lockstep(bootstrap=kafka_bootstrap, run_id=run_id, frame=FRAME, policy=ProbePolicy())
    )
    return asyncio.run(read_run(kafka_bootstrap, PORTFOLIO_EVENTS.name, run_id))


def test_offline_env_and_streaming_pipeline_make_identical_trades(
    streamed: list[Event],
) -> None:
    offline = run_offline()
    fills = [e for e in streamed if isinstance(e, OrderFilled)]
    online: list[Trade] = [(f.step, f.symbol, f.side, f.quantity, f.price, f.fee) for f in fills]

    assert offline.steps == 60
    assert len(online) > 500
    assert online == offline.trades  # exactly: same floats, same order


def test_offline_and_streaming_final_equity_agree_to_the_cent(streamed: list[Event]) -> None:
    offline = run_offline()
    last = [e for e in streamed if isinstance(e, AccountMarked)][-1]

    assert round(last.equity, 2) == round(offline.equity, 2)
    assert last.equity == offline.equity
    assert last.cash == offline.cash


def test_parity_run_exercises_every_gate(streamed: list[Event]) -> None:
    skips = Counter(e.reason for e in streamed if isinstance(e, OrderSkipped))
    clips = Counter(c for e in streamed if isinstance(e, OrderFilled) for c in e.clipped_by)
    kinds = Counter(e.kind for e in streamed if isinstance(e, DecisionRecorded))
    sides = Counter(e.side for e in streamed if isinstance(e, OrderFilled))

    assert kinds["buy"] and kinds["sell"] and kinds["hold"], kinds
    assert sides["buy"] and sides["sell"], sides
    assert skips["below_min_trade"] and skips["at_position_cap"] and skips["no_position"], skips
    assert clips["position_cap"] and clips["insufficient_cash"], clips
