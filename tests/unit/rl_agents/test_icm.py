"""The intrinsic curiosity module: its losses, its reward, the capped mix, and SAC with it."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rl_agents.curiosity import ICM, ICMConfig, mix_rewards
from rl_agents.sac import SAC, Batch, SACConfig

CONFIG = ICMConfig(enabled=True, feature_dim=8, hidden_size=32)


def icm(config: ICMConfig = CONFIG, obs_dim: int = 5, action_dim: int = 1) -> ICM:
    return ICM(obs_dim, action_dim, config, torch.Generator().manual_seed(0))


def transitions(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 5, generator=g)
    actions = torch.rand(n, 1, generator=g) * 2 - 1
    next_obs = obs + actions  # a deterministic world the ICM can learn
    return obs, actions, next_obs


def test_loss_weights_inverse_and_forward_by_beta() -> None:
    out = icm()(*transitions())

    beta = CONFIG.beta
    expected = (1 - beta) * out.inverse_loss + beta * out.forward_loss
    torch.testing.assert_close(out.loss, expected)
    assert out.intrinsic.shape == (64,)
    assert not out.intrinsic.requires_grad


def test_intrinsic_reward_is_eta_times_the_forward_error() -> None:
    module = icm()
    obs, actions, next_obs = transitions()

    reward = module.intrinsic_reward(obs, actions, next_obs)

    with torch.no_grad():
        phi_next = module.encoder(next_obs)
        predicted = module.forward_model(torch.cat([module.encoder(obs), actions], dim=-1))
        error = (predicted - phi_next).square().mean(-1)
    torch.testing.assert_close(reward, CONFIG.eta * error)
    assert torch.all(
        icm(dataclasses.replace(CONFIG, eta=0.0)).intrinsic_reward(*transitions()) == 0
    )


def test_curiosity_fades_as_the_icm_learns_a_deterministic_world() -> None:
    module = icm()
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    batch = transitions()
    first = module.intrinsic_reward(*batch).mean().item()

    for seed in range(100):
        optimizer.zero_grad()
        module(*transitions(seed=seed)).loss.backward()
        optimizer.step()

    assert module.intrinsic_reward(*batch).mean().item() < 0.5 * first


def test_small_intrinsic_rewards_mix_at_their_weights() -> None:
    extrinsic = torch.tensor([1.0, -2.0, 0.5])
    intrinsic = torch.tensor([0.1, 0.2, 0.0])

    mixed = mix_rewards(extrinsic, intrinsic, CONFIG)

    torch.testing.assert_close(mixed.total, 0.9 * extrinsic + 0.1 * intrinsic)
    torch.testing.assert_close(mixed.ratio, torch.tensor(0.03 / (0.9 * 3.5)))


def test_large_intrinsic_rewards_are_capped_at_ten_percent_of_the_magnitude() -> None:
    extrinsic = torch.tensor([1.0, -1.0, 0.0, 2.0])
    intrinsic = torch.tensor([50.0, 0.0, 100.0, 10.0])

    mixed = mix_rewards(extrinsic, intrinsic, CONFIG)

    ext_part = (0.9 * extrinsic).abs().sum()
    int_part = mixed.intrinsic.abs().sum()
    assert (int_part / (ext_part + int_part)).item() == pytest.approx(0.10)
    torch.testing.assert_close(mixed.total, 0.9 * extrinsic + mixed.intrinsic)
    ordered = mixed.intrinsic / intrinsic.clamp_min(1e-9)  # one factor for the batch
    assert ordered[0].item() == pytest.approx(ordered[2].item())
    assert mixed.ratio.item() == pytest.approx(0.10 / 0.90)


def test_batch_without_extrinsic_reward_gets_no_intrinsic_reward() -> None:
    mixed = mix_rewards(torch.zeros(4), torch.ones(4), CONFIG)

    assert mixed.total.tolist() == [0.0] * 4
    assert mixed.ratio.item() == 0.0


def test_sac_with_curiosity_trains_the_icm_and_reports_the_ratio() -> None:
    config = SACConfig(device="cpu", hidden_sizes=(32, 32), icm=CONFIG)
    agent = SAC(config, obs_dim=5, action_dim=1)
    assert agent.icm is not None
    before = [p.detach().clone() for p in agent.icm.parameters()]
    obs, actions, next_obs = transitions()
    batch = Batch(obs, actions, torch.randn(64), next_obs, torch.zeros(64), torch.zeros(64),
                  torch.zeros(64, dtype=torch.int64))  # fmt: skip

    losses = agent.update(batch)

    assert losses["icm_loss"] > 0.0
    assert 0.0 < losses["intrinsic_ratio"] <= 0.10 / 0.90 + 1e-6
    assert all(math.isfinite(v) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.icm.parameters(), strict=True))
    assert "icm" in agent.state_dict()


def test_sac_without_curiosity_has_no_icm() -> None:
    agent = SAC(SACConfig(device="cpu", hidden_sizes=(8,)), obs_dim=5, action_dim=1)

    assert agent.icm is None
    assert "icm" not in agent.state_dict()
