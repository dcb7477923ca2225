"""Agents: data sets, policies, gymnasium environments, SAC with curiosity, checkpoints.

``rl_agents`` never imports Kafka or a database; it builds on ``core``.
Importing it registers the environments with gymnasium:
``tradingbot/ContinuousTrading-v0``, ``tradingbot/PortfolioTrading-v0`` and
``tradingbot/HybridTrading-v0``.
"""

import gymnasium as gym

_ENVS = {
    "tradingbot/ContinuousTrading-v0": "rl_agents.envs:ContinuousTradingEnv",
    "tradingbot/PortfolioTrading-v0": "rl_agents.envs:PortfolioTradingEnv",
    "tradingbot/HybridTrading-v0": "rl_agents.envs:make_hybrid",
}
for _id, _entry in _ENVS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry)
