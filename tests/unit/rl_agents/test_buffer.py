"""The replay buffer: batched adds, circular overwrite, seeded sampling, and the two ends
of an episode kept apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_agents.sac import SAC, Batch, ReplayBuffer, SACConfig


def filled(capacity: int, rows: int, obs_dim: int = 3) -> ReplayBuffer:
    """A buffer whose row i holds observation i, action i/100, reward i."""
    buffer = ReplayBuffer(capacity, obs_dim, 1)
    index = np.arange(rows, dtype=np.float32)
    buffer.add(
        np.repeat(index[:, None], obs_dim, axis=1),
        index[:, None] / 100,
        index,
        np.repeat(index[:, None] + 1, obs_dim, axis=1),
        np.zeros(rows),
        np.zeros(rows),
    )
    return buffer


def test_one_transition_added_is_sampled_back_with_float32_rows() -> None:
    buffer = ReplayBuffer(10, 3, 2)
    obs = np.array([1.0, 2.0, 3.0], dtype=np.float32)

    buffer.add(obs, np.array([0.5, -0.5]), 1.5, obs + 1, False, True)
    batch = buffer.sample(4, torch.Generator().manual_seed(0))

    assert len(buffer) == 1
    assert isinstance(batch, Batch)
    assert batch.observations.shape == (4, 3)
    assert batch.actions.shape == (4, 2)
    assert batch.rewards.shape == batch.terminated.shape == batch.truncated.shape == (4,)
    assert all(t.dtype == torch.float32 for t in batch[:6])
    assert batch.agent_ids.dtype == torch.int64
    assert batch.observations[0].tolist() == [1.0, 2.0, 3.0]
    assert batch.next_observations[0].tolist() == [2.0, 3.0, 4.0]
    assert batch.rewards.tolist() == [1.5] * 4
    assert batch.terminated.tolist() == [0.0] * 4
    assert batch.truncated.tolist() == [1.0] * 4


def test_one_portfolio_step_adds_143_transitions_in_one_call_with_their_symbols() -> None:
    n, d = 143, 63
    buffer = ReplayBuffer(1_000, d, 1)
    obs = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)

    buffer.add(
        obs, np.linspace(-1, 1, n), np.full(n, 0.01), obs, np.zeros(n), np.zeros(n), np.arange(n)
    )

    assert len(buffer) == n
    assert torch.equal(buffer.observations[:n], torch.from_numpy(obs))
    assert buffer.agent_ids[:n].tolist() == list(range(n))
    assert buffer.actions[:n, 0].tolist() == pytest.approx(np.linspace(-1, 1, n).tolist())


def test_one_reward_and_end_flags_apply_to_every_row_of_a_batch() -> None:
    buffer = ReplayBuffer(10, 2, 1)

    buffer.add(np.zeros((4, 2)), np.zeros((4, 1)), 0.5, np.ones((4, 2)), False, True, np.arange(4))

    assert buffer.rewards[:4].tolist() == [0.5] * 4
    assert buffer.terminated[:4].tolist() == [0.0] * 4
    assert buffer.truncated[:4].tolist() == [1.0] * 4


def test_truncation_and_termination_are_stored_apart() -> None:
    buffer = ReplayBuffer(4, 1, 1)

    buffer.add(np.zeros((3, 1)), np.zeros((3, 1)), np.zeros(3), np.ones((3, 1)),
               [True, False, False], [False, True, False])  # fmt: skip

    assert buffer.terminated[:3].tolist() == [1.0, 0.0, 0.0]
    assert buffer.truncated[:3].tolist() == [0.0, 1.0, 0.0]


def test_a_full_buffer_overwrites_the_oldest_rows_first_across_the_end() -> None:
    buffer = filled(5, 3)

    buffer.add(np.full((4, 3), 9.0), np.zeros((4, 1)), np.full(4, 9.0), np.zeros((4, 3)),
               np.zeros(4), np.zeros(4))  # fmt: skip

    assert len(buffer) == 5
    assert buffer.position == 2
    assert buffer.rewards.tolist() == [9.0, 9.0, 2.0, 9.0, 9.0]  # rows 3, 4, 0, 1 rewritten
    buffer.add(np.zeros(3), np.zeros(1), 7.0, np.zeros(3), False, False)
    assert buffer.rewards.tolist() == [9.0, 9.0, 7.0, 9.0, 9.0]


def test_sampling_only_draws_filled_rows() -> None:
    buffer = filled(100, 5)

    batch = buffer.sample(1_000, torch.Generator().manual_seed(1))

    assert set(batch.rewards.tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}
    assert torch.equal(batch.observations[:, 0], batch.rewards)  # rows stay together
    assert torch.equal(batch.next_observations[:, 0], batch.rewards + 1)


def test_same_generator_seed_samples_the_same_transitions() -> None:
    buffer = filled(100, 50)

    a = buffer.sample(32, torch.Generator().manual_seed(7))
    b = buffer.sample(32, torch.Generator().manual_seed(7))
    c = buffer.sample(32, torch.Generator().manual_seed(8))

    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a.rewards, c.rewards)


def test_sampling_an_empty_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(10, 3, 1).sample(4, torch.Generator())


def test_rows_of_the_wrong_width_are_refused_naming_the_shape() -> None:
    buffer = ReplayBuffer(10, 3, 1)

    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        buffer.add(np.zeros((2, 3)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 4)),
                   np.zeros(2), np.zeros(2))  # fmt: skip


def test_more_rows_than_the_capacity_are_refused() -> None:
    with pytest.raises(ValueError, match="1..4"):
        filled(4, 5)


def test_bootstrap_goes_through_truncation_and_stops_at_termination() -> None:
    agent = SAC(SACConfig(device="cpu", hidden_sizes=(8,), gamma=0.9), obs_dim=2, action_dim=1)
    with torch.no_grad():  # every target critic says Q = 5 whatever the input
        for weight, bias in zip(
            agent.critic_target.weights, agent.critic_target.biases, strict=True
        ):
            weight.zero_()
            bias.fill_(5.0)
    buffer = ReplayBuffer(3, 2, 1)
    buffer.add(np.zeros((3, 2)), np.zeros((3, 1)), [1.0, 1.0, 1.0], np.ones((3, 2)),
               [True, False, False], [False, True, False])  # fmt: skip
    batch = Batch(  # exactly the three rows, in order
        buffer.observations, buffer.actions, buffer.rewards, buffer.next_observations,
        buffer.terminated, buffer.truncated, buffer.agent_ids,
    )  # fmt: skip
    alpha = torch.tensor(0.0)  # no entropy term: the target is r + gamma * (1 - done) * 5

    target = agent.td_target(batch.rewards, batch, alpha)

    assert target.tolist() == pytest.approx([1.0, 1.0 + 0.9 * 5.0, 1.0 + 0.9 * 5.0])
