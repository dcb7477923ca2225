"""The serving side: a checkpoint trained through the options, served as a ``Policy``."""

from __future__ import annotations

import numpy as np

from rl_agents.options.config import OptionsConfig
from rl_agents.options.controller import OptionsController
from rl_agents.policies import Actions, Observations, Policy


class OptionsPolicy:
    """The served policy of an options-trained checkpoint.

    Each call gets the rows of the symbols an agent serves, in the same order
    every bar; the option of each row is kept from call to call. The rows are
    augmented exactly as in training (``OptionsController``), the inner policy
    answers with its choices and the running options' actions are returned. A
    call with another number of rows starts every symbol afresh.
    """

    def __init__(self, policy: Policy, config: OptionsConfig) -> None:
        self.inner = policy
        self.config = config
        self.name = policy.name
        self.version = policy.version
        self.controller: OptionsController | None = None

    def act(self, observations: Observations) -> Actions:
        """One trade action in [-1, 1] per observation row."""
        obs = np.asarray(observations, dtype=np.float32)
        if obs.ndim != 2:
            raise ValueError(f"expected observations [n, d], got shape {obs.shape}")
        if self.controller is None or self.controller.n != len(obs):
            self.controller = OptionsController(self.config, len(obs))
        augmented = self.controller.observe(obs)
        return self.controller.act(self.inner.act(augmented))

    def report(self) -> dict[str, float]:
        """Usage share and mean persistence of each option over what this policy served
        (``OptionStats.to_dict``, as ``rl_agents.options.report`` gives for training); empty
        before the first call."""
        return {} if self.controller is None else self.controller.stats.to_dict()


def serving_policy(policy: Policy, config: OptionsConfig) -> OptionsPolicy:
    """``policy`` (a served SAC checkpoint) trading through the options of ``config``."""
    return OptionsPolicy(policy, config)
