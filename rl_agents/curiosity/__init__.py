"""Intrinsic curiosity: rewards for transitions the agent cannot predict yet."""

from rl_agents.curiosity.config import ICMConfig
from rl_agents.curiosity.icm import ICM, ICMOutput, MixedRewards, mix_rewards

__all__ = ["ICM", "ICMConfig", "ICMOutput", "MixedRewards", "mix_rewards"]
