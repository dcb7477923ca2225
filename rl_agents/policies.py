"""Policies behind one interface: a batch of observations in, one action per row out.

Trained SAC checkpoints will stand behind the same ``Policy`` protocol; until
then the symbol agents serve the ``MomentumPolicy`` baseline.
"""

from __future__ import annotations

from typing import Protocol, cast

import numpy as np
import numpy.typing as npt

from core.features import ACCOUNT_FEATURES, FEATURE_NAMES, N_BAR_FEATURES
from rl_agents.envs.hybrid import ActionSpaceMigrator, DiscreteAction

Observations = npt.NDArray[np.float32]
Actions = npt.NDArray[np.float64]


class Policy(Protocol):
    """Maps observations ``[n, obs_dim]`` to raw actions ``[n]`` in [-1, 1]."""

    name: str
    version: str

    def act(self, observations: Observations) -> Actions:
        """One action per observation row."""
        ...


class MomentumPolicy:
    """Baseline: buy after recent gains, sell after recent losses, hold when flat.

    ``a = tanh(gain * sum of the last `lookback` log returns)``.
    """

    name = "momentum"
    version = "1"

    def __init__(self, *, window: int, lookback: int = 5, gain: float = 25.0) -> None:
        if not 1 <= lookback <= window:
            raise ValueError(f"lookback must be in [1, window={window}], got {lookback}")
        self.window = window
        self.lookback = lookback
        self.gain = gain
        column = FEATURE_NAMES.index("log_return")
        self._columns = [w * N_BAR_FEATURES + column for w in range(window - lookback, window)]

    def act(self, observations: Observations) -> Actions:
        """One action per row."""
        momentum = observations[:, self._columns].astype(np.float64).sum(axis=1)
        return np.tanh(self.gain * momentum)


class ProbePolicy:
    """A deterministic policy that exercises every rule: for parity tests and benchmarks.

    Each action is a hash of the observation's float32 bit patterns (integer
    arithmetic, so it does not depend on summation order), spread uniformly
    over [-1, 1]: it buys, sells and holds, and the minimum trade stops some
    orders. A symbol whose position is above ``press`` of equity is bought
    with 1.0 until the position cap stops it. Equal observations give equal
    actions, bit for bit.
    """

    name = "probe"
    version = "1"

    def __init__(self, seed: int = 7, press: float = 0.08) -> None:
        self.seed = seed
        self.press = press
        self._weights: npt.NDArray[np.uint64] | None = None

    def act(self, observations: Observations) -> Actions:
        """One action per row."""
        obs = np.ascontiguousarray(observations, dtype=np.float32)
        weights = self._weights
        if weights is None or weights.shape[0] != obs.shape[1]:
            rng = np.random.default_rng(self.seed)
            weights = np.asarray(rng.integers(1, 2**31, size=obs.shape[1]), dtype=np.uint64)
            self._weights = weights
        bits = obs.view(np.uint32).astype(np.uint64)
        mixed = (bits * weights).sum(axis=1, dtype=np.uint64) % np.uint64(2001)
        actions = mixed.astype(np.float64) / 1000.0 - 1.0
        position_share = obs[:, -len(ACCOUNT_FEATURES)]
        return np.where(position_share > self.press, 1.0, actions)


class DiscreteAlwaysPolicy:
    """The original failure, on purpose: a discrete policy that always answers one action.

    It answers through the discrete view of the action space
    (``rl_agents.envs.hybrid``): ``BUY_SMALL`` becomes the raw action 0.25
    every step, the 99.88% BUY_SMALL fleet of the plan.
    """

    version = "1"

    def __init__(self, action: DiscreteAction = DiscreteAction.BUY_SMALL) -> None:
        self.action = action
        self.name = f"always-{action.name.lower().replace('_', '-')}"
        self._migrator = ActionSpaceMigrator()

    def act(self, observations: Observations) -> Actions:
        """The same discrete action for every row, as a continuous action."""
        discrete = np.full(len(observations), int(self.action))
        return self._migrator.to_continuous(discrete)


POLICIES = (
    "momentum",
    "probe",
    "always-buy-small",
    "sac:<checkpoint path>",
    "ppo:<baseline zip path>",
    "dqn:<baseline zip path>",
    "buy-and-hold",
    "random",
)


def make_policy(name: str, *, window: int) -> Policy:
    """The policy registered under ``name`` (momentum looks back at most ``window`` bars).

    ``sac:<path>`` serves a trained SAC checkpoint; it is checked against the
    serving observation (``window`` bars of features plus the account) and
    action spaces, so a checkpoint trained for other observations fails here.
    ``ppo:<path>`` and ``dqn:<path>`` serve a discrete baseline
    (``rl_agents.baselines.ppo``) trained with that algorithm, checked against
    the same observation width.
    """
    if name.startswith("sac:"):
        from gymnasium import spaces

        from rl_agents.phases import serving_policy
        from rl_agents.sac.policy import SACPolicy

        width = window * N_BAR_FEATURES + len(ACCOUNT_FEATURES)
        policy = SACPolicy.from_checkpoint(
            name.removeprefix("sac:"),
            spaces.Box(-5.0, 5.0, (width,), dtype=np.float32),
            spaces.Box(-1.0, 1.0, (1,), dtype=np.float32),
        )
        return cast(Policy, serving_policy(policy, policy.config))
    if name.startswith(("ppo:", "dqn:")):
        from rl_agents.baselines.ppo import PPOPolicy

        algorithm, path = name.split(":", 1)
        width = window * N_BAR_FEATURES + len(ACCOUNT_FEATURES)
        baseline = PPOPolicy.load(path, obs_width=width)
        if baseline.name != f"{algorithm}-discrete":
            raise ValueError(
                f"{path} is a {baseline.name} baseline, not {algorithm}: serve it as "
                f"{baseline.name.split('-')[0]}:{path}"
            )
        return baseline
    if name in ("buy-and-hold", "random"):
        from rl_agents.baselines.reference import BuyAndHoldPolicy, RandomPolicy

        return BuyAndHoldPolicy() if name == "buy-and-hold" else RandomPolicy()
    if name == "momentum":
        return MomentumPolicy(window=window, lookback=min(window, 5))
    if name == "probe":
        return ProbePolicy()
    if name == "always-buy-small":
        return DiscreteAlwaysPolicy(DiscreteAction.BUY_SMALL)
    raise ValueError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})")
