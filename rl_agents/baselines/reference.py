"""Reference policies for the gate table: buy-and-hold and uniformly random actions.

Both stand behind the serving agents' ``Policy`` protocol, so the evaluation
replays them through the same streaming pipeline as a trained fleet.
"""

from __future__ import annotations

import numpy as np

from core.features import ACCOUNT_FEATURES
from rl_agents.policies import Actions, Observations

POSITION = -len(ACCOUNT_FEATURES) + ACCOUNT_FEATURES.index("position_share")
CASH = -len(ACCOUNT_FEATURES) + ACCOUNT_FEATURES.index("cash_share")


class BuyAndHoldPolicy:
    """Spend the cash once, equally over every symbol, then hold to the end.

    Every symbol without a position answers 1.0 ("buy with all the cash")
    while the book is mostly cash (``cash_share > 0.5``); the rules allocate
    competing buys pro rata, so the first step buys an equal share of every
    symbol (within the position cap). Afterwards every answer is 0 (hold).
    Stateless: the decision is read from the account features.
    """

    name = "buy-and-hold"
    version = "1"

    def act(self, observations: Observations) -> Actions:
        """1.0 for unheld symbols while the book is mostly cash, else 0."""
        obs = np.asarray(observations)
        buy = (obs[:, POSITION] <= 0.0) & (obs[:, CASH] > 0.5)
        return np.where(buy, 1.0, 0.0)


class RandomPolicy:
    """Uniform actions in [-1, 1] from a seeded generator (the no-skill reference)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.version = f"seed-{seed}"
        self._rng = np.random.default_rng(seed)

    def act(self, observations: Observations) -> Actions:
        """One uniform draw per row."""
        return self._rng.uniform(-1.0, 1.0, size=len(observations))
