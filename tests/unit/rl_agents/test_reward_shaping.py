"""Potential-based shaping keeps the optimal policy (Ng et al. 1999), on small finite MDPs
solved by value iteration, with the shaping function the trading wrapper uses."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from rl_agents.rewards.shaping import potential_shaping

FloatArray = npt.NDArray[np.float64]
GAMMA = 0.9


def random_mdp(seed: int, states: int = 7, actions: int = 3) -> tuple[FloatArray, FloatArray]:
    """Transition probabilities ``P[s, a, s']`` and rewards ``R[s, a, s']``."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=(states, actions, states)) ** 3  # uneven, some nearly deterministic
    p /= p.sum(axis=2, keepdims=True)
    return p, rng.normal(size=(states, actions, states))


def optimal_q(
    p: FloatArray, r: FloatArray, gamma: float, terminal: npt.NDArray[np.bool_]
) -> FloatArray:
    """``Q*`` by value iteration; entering a ``terminal`` state ends the episode."""
    v = np.zeros(p.shape[0])
    for _ in range(5_000):
        future = np.where(terminal, 0.0, v)
        q: FloatArray = (p * (r + gamma * future[None, None, :])).sum(axis=2)
        done = np.max(np.abs(q.max(axis=1) - v)) < 1e-13
        v = q.max(axis=1)
        if done:
            break
    return q


def shaped(
    r: FloatArray, phi: FloatArray, gamma: float, terminal: npt.NDArray[np.bool_]
) -> FloatArray:
    """``R + F`` with ``F(s, s') = gamma * phi(s') - phi(s)`` from ``potential_shaping``."""
    f = potential_shaping(phi[:, None, None], phi[None, None, :], gamma, terminal[None, None, :])
    return r + f


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("episodic", [False, True])
def test_any_potential_leaves_the_optimal_policy_and_shifts_q_by_the_potential(
    seed: int, episodic: bool
) -> None:
    p, r = random_mdp(seed)
    terminal = np.zeros(p.shape[0], dtype=bool)
    if episodic:
        terminal[-1] = True  # its potential is counted as 0, as the proof needs
    phi = np.random.default_rng(100 + seed).normal(scale=10.0, size=(p.shape[0],))  # arbitrary
    live = ~terminal

    q = optimal_q(p, r, GAMMA, terminal)
    q_shaped = optimal_q(p, shaped(r, phi, GAMMA, terminal), GAMMA, terminal)

    assert np.array_equal(q.argmax(axis=1)[live], q_shaped.argmax(axis=1)[live])
    np.testing.assert_allclose(q_shaped[live], (q - phi[:, None])[live], atol=1e-9)


def test_a_bonus_that_is_not_a_potential_difference_changes_the_optimal_policy() -> None:
    """The check above can fail: a bonus on one state's worst action makes it the best."""
    p, r = random_mdp(0)
    terminal = np.zeros(p.shape[0], dtype=bool)
    q = optimal_q(p, r, GAMMA, terminal)
    worst = int(q[0].argmin())
    bonus = np.zeros_like(r)
    bonus[0, worst, :] = q[0].max() - q[0].min() + 1.0

    q_bonus = optimal_q(p, r + bonus, GAMMA, terminal)

    assert q.argmax(axis=1)[0] != worst
    assert q_bonus.argmax(axis=1)[0] == worst


def test_shaping_of_a_terminal_transition_forgets_the_next_potential() -> None:
    f = potential_shaping(np.array([1.0, 1.0]), np.array([5.0, 5.0]), 0.5, np.array([False, True]))

    np.testing.assert_allclose(f, [0.5 * 5.0 - 1.0, -1.0])
