"""Reference agents to measure the SAC fleet against (docs/baselines.md).

``rl_agents.baselines.ppo``: Stable-Baselines3 PPO on the ``Discrete(7)`` view
of the trading environments, the setup of the original fleet that collapsed
to BUY_SMALL. It needs the dev dependencies (stable-baselines3, torch), so
this package imports nothing by itself.
"""
