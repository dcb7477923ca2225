"""The plan's configuration templates load into SACConfig with the plan's values."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_agents.sac.config import ConfigError, SACConfig

TEMPLATES = Path(__file__).resolve().parents[3] / "rl_agents" / "sac" / "templates"


def test_phase_a2_template_is_sac_without_curiosity() -> None:
    config = SACConfig.from_yaml(TEMPLATES / "phase_a2_sac.yaml")

    assert config.icm.enabled is False
    assert (config.total_timesteps, config.batch_size, config.buffer_size) == (
        100_000,
        256,
        100_000,
    )
    assert config.learning_rate == pytest.approx(3e-4)


def test_continuous_sac_icm_template_turns_curiosity_on_with_the_plan_values() -> None:
    config = SACConfig.from_yaml(TEMPLATES / "continuous_sac_icm.yaml")

    assert config.icm.enabled is True
    assert (config.icm.eta, config.icm.beta) == (pytest.approx(0.01), pytest.approx(0.2))


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("algorithm: SAC\ntraining:\n  learnign_rate: 0.1\n")

    with pytest.raises(ConfigError, match="learnign_rate"):
        SACConfig.from_yaml(path)


def test_fleet_template_trains_the_portfolio_fleet_on_scaled_symbol_rewards() -> None:
    config = SACConfig.from_yaml(TEMPLATES / "fleet_sac.yaml")

    assert config.env_type == "portfolio"
    assert config.reward_scale == pytest.approx(1000.0)
    assert config.init_alpha == pytest.approx(0.02)
    assert config.target_entropy == pytest.approx(0.0)  # the run docs/evaluation.md evaluates
    assert config.seed == 1
    assert config.total_timesteps > config.learning_starts


def test_reward_scale_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="reward_scale"):
        SACConfig.from_yaml("algorithm: SAC\ntraining:\n  reward_scale: 0\n")
