"""Migration of the discrete actors (256 -> 128 -> 7) to continuous ones (256 -> 128 -> 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rl_agents.migration import (
    MigrationError,
    discrete_actor_of,
    migrate_actor,
    migrate_checkpoint,
    sac_actor_from_discrete,
)


def discrete_actor(obs_dim: int = 63) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 7)
    )


def linear(network: nn.Sequential, i: int) -> nn.Linear:
    layer = network[i]
    assert isinstance(layer, nn.Linear)
    return layer


def test_continuous_actor_reuses_the_two_hidden_layers_and_ends_in_one_tanh_output() -> None:
    discrete = discrete_actor()

    continuous = migrate_actor(discrete)

    kinds = [type(m) for m in continuous]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear, nn.Tanh]
    for i in (0, 2):
        new, old = continuous[i], discrete[i]
        assert isinstance(new, nn.Linear) and isinstance(old, nn.Linear)
        assert torch.equal(new.weight, old.weight) and torch.equal(new.bias, old.bias)
        assert new.weight.data_ptr() != old.weight.data_ptr()  # copied, not shared
    head = continuous[4]
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (128, 1)


def test_migrated_actor_keeps_the_hidden_features_and_holds_until_trained() -> None:
    discrete = discrete_actor()
    continuous = migrate_actor(discrete)
    obs = torch.randn(10, 63)

    torch.testing.assert_close(continuous[:4](obs), discrete[:4](obs))
    assert continuous(obs).shape == (10, 1)
    assert torch.all(continuous(obs) == 0.0)  # HOLD


def test_training_the_migrated_actor_leaves_the_discrete_one_untouched() -> None:
    discrete = discrete_actor()
    before = linear(discrete, 0).weight.detach().clone()
    continuous = migrate_actor(discrete)
    optimizer = torch.optim.SGD(continuous.parameters(), lr=0.1)

    for _ in range(3):
        optimizer.zero_grad()
        (continuous(torch.randn(8, 63)) - 0.5).square().mean().backward()
        optimizer.step()

    assert torch.equal(linear(discrete, 0).weight, before)
    assert not torch.equal(linear(continuous, 0).weight, before)


def test_sac_actor_from_a_discrete_one_has_its_encoder_and_a_hold_head() -> None:
    discrete = discrete_actor()

    actor = sac_actor_from_discrete(discrete)
    obs = torch.randn(5, 63)
    mean, log_std = actor(obs)

    torch.testing.assert_close(actor.encoder(obs), discrete[:4](obs))
    assert torch.all(mean == 0.0) and torch.all(log_std == 0.0)


@pytest.mark.parametrize(
    "network",
    [
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 7)),
        nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 7)),
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)),
    ],
)
def test_network_that_is_not_a_discrete_actor_is_refused(network: nn.Sequential) -> None:
    with pytest.raises(MigrationError, match="expected"):
        migrate_actor(network)


def test_checkpoint_file_is_migrated_next_to_the_original(tmp_path: Path) -> None:
    discrete = discrete_actor(obs_dim=10)
    source = tmp_path / "phase3_agent.pt"
    torch.save({"actor": discrete.state_dict(), "steps": 90_000}, source)

    target = migrate_checkpoint(source, tmp_path / "phase3_agent_continuous.pt")

    migrated = torch.load(target, weights_only=True)
    assert migrated["action_space"] == "continuous"
    assert migrated["steps"] == 90_000
    assert migrated["actor"]["4.weight"].shape == (1, 128)
    assert torch.equal(migrated["actor"]["2.weight"], linear(discrete, 2).weight)
    assert isinstance(
        discrete_actor_of(torch.load(source, weights_only=True)["actor"]), nn.Sequential
    )


def test_file_without_an_actor_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "other.pt"
    torch.save({"policy": {}}, source)

    with pytest.raises(MigrationError, match="'actor'"):
        migrate_checkpoint(source, tmp_path / "out.pt")
