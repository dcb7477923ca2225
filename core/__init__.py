"""Pure domain of tradingbot: bars, actions, execution, the ledger and performance.

Everything here is a plain function or a frozen value: numpy only, no I/O, no
clock, no randomness without a seed. The gymnasium environments and the
services call the same functions, so an agent is served under exactly the
rules it was trained under.
"""
