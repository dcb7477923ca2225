"""The three services of one run in one event loop (tests, benchmarks, notebooks).

Same code as the processes that ``tradingbot demo`` starts, on the same real
broker; only the process boundary is gone.
"""

from __future__ import annotations

import asyncio

from core.bars import BarFrame
from core.ledger import PortfolioState
from core.rules import TradingRules
from rl_agents.policies import Policy
from services.config import KafkaConfig
from services.market_replay.app import MarketReplay, ReplayConfig
from services.portfolio_manager.app import PortfolioConfig, PortfolioManager
from services.symbol_agent.app import AgentConfig, SymbolAgent


async def run_lockstep(
    *,
    bootstrap: str,
    run_id: str,
    frame: BarFrame,
    rules: TradingRules | None = None,
    agent: AgentConfig | None = None,
    policy: Policy | None = None,
    metrics_ports: tuple[int, int, int] = (0, 0, 0),
    timeout_s: float = 600.0,
    replay: ReplayConfig | None = None,
    agents: int = 1,
) -> tuple[PortfolioState, float]:
    """Replay ``frame`` through the pipeline; return the final ledger state and the seconds.

    ``metrics_ports`` serves /metrics of the replay, the agent and the portfolio
    manager (0: not served); ``agent.metrics_port`` is replaced by the second.
    ``replay`` sets the replay's mode and speed (lockstep by default); ``agents``
    symbol agents share the bars as one consumer group (only the first serves
    /metrics).
    """
    rules = rules or TradingRules()
    config = KafkaConfig(bootstrap=bootstrap, run_id=run_id)
    replay_port, agent_port, manager_port = metrics_ports
    agent_config = (agent or AgentConfig()).model_copy(update={"metrics_port": agent_port})
    manager = PortfolioManager(config, rules, PortfolioConfig(metrics_port=manager_port))
    symbol_agents = [
        SymbolAgent(
            config,
            agent_config if i == 0 else agent_config.model_copy(update={"metrics_port": 0}),
            rules,
            policy,
        )
        for i in range(agents)
    ]
    replay_config = (replay or ReplayConfig()).model_copy(
        update={"dataset": frame.source, "metrics_port": replay_port}
    )
    market = MarketReplay(config, replay_config, frame)
    tasks = [
        asyncio.ensure_future(manager.serve()),
        asyncio.ensure_future(market.serve()),
        *(asyncio.ensure_future(a.serve()) for a in symbol_agents),
    ]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
        if len(done) < len(tasks):
            raise TimeoutError(f"run {run_id} did not finish within {timeout_s:.0f}s")
        state, elapsed = tasks[0].result(), tasks[1].result()
        assert isinstance(state, PortfolioState) and isinstance(elapsed, float)
        return state, elapsed
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
