"""Hierarchical options of phase B: the agent picks an option, the option trades.

``wrap_env`` for training, ``serving_policy`` for the symbol agents,
``report`` for usage and persistence; the option logic is in
``rl_agents.options.options`` (docs/options.md).
"""

from rl_agents.options.config import OptionsConfig
from rl_agents.options.controller import OptionsController, OptionStats
from rl_agents.options.options import (
    AUGMENTED_FEATURES,
    OPEN_SCHEDULE,
    Option,
    OptionState,
    augment,
    augment_space,
    choose,
    decide,
    observe,
)
from rl_agents.options.policy import OptionsPolicy, serving_policy
from rl_agents.options.wrapper import OptionsWrapper, report, wrap_env

__all__ = [
    "AUGMENTED_FEATURES",
    "OPEN_SCHEDULE",
    "Option",
    "OptionState",
    "OptionStats",
    "OptionsConfig",
    "OptionsController",
    "OptionsPolicy",
    "OptionsWrapper",
    "augment",
    "augment_space",
    "choose",
    "decide",
    "observe",
    "report",
    "serving_policy",
    "wrap_env",
]
