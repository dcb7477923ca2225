"""Agents: data sets, policies and (later) gymnasium environments and SAC.

``rl_agents`` never imports Kafka or a database; it builds on ``core``.
"""
