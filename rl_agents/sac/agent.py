"""Soft actor-critic: the agent, its update, the training loop and evaluation.

The update follows Stable-Baselines3's SAC (one temperature for the batch,
the actor trained against the freshly updated critics, a Polyak-averaged
target) with twin critics fused into one module and a guard that refuses to
step an optimizer on a non-finite loss or gradient. All randomness (weights,
exploration noise, replay sampling) comes from generators seeded by
``SACConfig.seed``; the environment and its action space are seeded by
``train``.
"""

from __future__ import annotations

import copy
import functools
import math
import operator
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import torch
from gymnasium import spaces
from torch import Tensor

from rl_agents.curiosity.icm import ICM, mix_rewards
from rl_agents.sac.buffer import Batch, ReplayBuffer
from rl_agents.sac.config import ConfigError, SACConfig
from rl_agents.sac.networks import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    FleetActor,
    SquashedGaussianActor,
    TwinCritic,
    squash,
)

if TYPE_CHECKING:
    from rl_agents.her.buffer import HERBuffer

FloatArray = npt.NDArray[np.float32]


class TrainingDiverged(RuntimeError):
    """A loss or a gradient norm became non-finite; no optimizer stepped on it."""

    def __init__(self, step: int, loss: str, value: float, last_finite: Mapping[str, float]):
        self.step = step
        self.loss = loss
        self.value = value
        self.last_finite = dict(last_finite)
        last = ", ".join(f"{k}={v:.6g}" for k, v in self.last_finite.items()) or "none yet"
        super().__init__(
            f"training diverged at update {step}: {loss} is {value} (not finite); the optimizer "
            f"did not step. Last finite values: {last}. Check the rewards and observations for "
            "NaN/inf, or lower learning_rate / max_grad_norm."
        )


class SAC:
    """An actor (one policy, or a ``FleetActor`` of ``n_agents`` symbols), twin critics,
    their targets, the temperature and, when enabled, the ICM; all on one device."""

    def __init__(
        self, config: SACConfig, obs_dim: int, action_dim: int, *, n_agents: int | None = None
    ) -> None:
        if n_agents is not None and action_dim != 1:
            raise ValueError(f"a FleetActor has one action per symbol, got action_dim={action_dim}")
        self.config = config
        self.obs_dim, self.action_dim, self.n_agents = obs_dim, action_dim, n_agents
        self.device = config.torch_device()
        init = torch.Generator().manual_seed(config.seed)
        hidden = config.hidden_sizes
        self.actor: SquashedGaussianActor | FleetActor = (
            SquashedGaussianActor(obs_dim, action_dim, hidden, init)
            if n_agents is None
            else FleetActor(n_agents, obs_dim, hidden, init)
        ).to(self.device)
        self.critic = TwinCritic(obs_dim, action_dim, hidden, init).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(
            math.log(config.init_alpha), device=self.device, requires_grad=True
        )
        self.icm = (
            ICM(obs_dim, action_dim, config.icm, init).to(self.device)
            if config.icm.enabled
            else None
        )
        self.target_entropy = config.entropy_target(action_dim)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        """Exploration noise and replay sampling."""

        self.actor_params: list[Tensor] = list(self.actor.parameters())
        self.critic_params: list[Tensor] = list(self.critic.parameters())
        self.target_params: list[Tensor] = list(self.critic_target.parameters())
        self.icm_params: list[Tensor] = [] if self.icm is None else list(self.icm.parameters())
        self.actor_optimizer = self._adam([*self.actor_params, self.log_alpha])
        """Steps the actor and the temperature (whose scalar gradient is not clipped)."""
        self.critic_optimizer = self._adam(self.critic_params)
        self.icm_optimizer = None if self.icm is None else self._adam(self.icm_params)
        self._zero = torch.zeros((), device=self.device)
        self.updates = 0
        """Gradient steps taken."""
        self.last_losses: dict[str, float] = {}
        """What the last successful update returned."""

    def _adam(self, params: Iterable[Tensor]) -> torch.optim.Adam:
        # fused: one kernel for all parameters, about 3x faster than foreach on a CPU
        fused = self.device.type in ("cpu", "cuda")
        lr = self.config.learning_rate
        return torch.optim.Adam(params, lr=lr, fused=fused, foreach=None if fused else True)

    # ---------------------------------------------------------------- acting

    def act_tensor(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions in [-1, 1]: ``[..., action_dim]`` for one policy, ``[..., n]`` for a fleet
        (``obs [..., n, d]``). Call under ``torch.no_grad`` or ``torch.inference_mode``."""
        mean, log_std = self.actor(obs)
        if not deterministic:
            noise = torch.randn(mean.shape, generator=self.generator, device=self.device)
            mean = mean + log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp() * noise
        action = torch.tanh(mean)
        return action.squeeze(-1) if self.n_agents is not None else action

    def act(self, obs: npt.NDArray[Any], deterministic: bool = False) -> FloatArray:
        """Actions in [-1, 1] for observations from an env (see ``act_tensor`` for shapes)."""
        with torch.inference_mode():
            x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            return self.act_tensor(x, deterministic).cpu().numpy()

    # ---------------------------------------------------------------- learning

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step of the critics, the actor and the temperature (and the ICM)."""
        cfg = self.config
        self.updates += 1
        obs, actions, ids = batch.observations, batch.actions, batch.agent_ids
        alpha = self.log_alpha.detach().exp()

        # Curiosity: train the ICM; mix its intrinsic reward into the extrinsic one.
        rewards, intrinsic_ratio, icm_loss = batch.rewards, self._zero, self._zero
        if self.icm is not None and self.icm_optimizer is not None:
            icm = self.icm(obs, actions, batch.next_observations)
            rewards, _, intrinsic_ratio = mix_rewards(batch.rewards, icm.intrinsic, cfg.icm)
            icm_loss = icm.loss
            self._step({"icm_loss": icm_loss}, self.icm_optimizer, self.icm_params)

        # Critics: regress both Q-values on the soft Bellman target. Only termination stops
        # the bootstrap; a truncated transition is bootstrapped through.
        target_q = self.td_target(rewards, batch, alpha)
        q = self.critic(obs, actions)
        critic_loss = 0.5 * (q - target_q).square().mean(1).sum()
        critic_norm = self._step(
            {"critic_loss": critic_loss}, self.critic_optimizer, self.critic_params
        )

        # Actor and temperature, one backward pass (their gradients are disjoint). The actor
        # maximises the soft value of its own actions under the updated critics, whose
        # weights are frozen here; the temperature moves the entropy towards the target.
        mean, log_std = self.actor(obs, ids)
        noise = torch.randn(mean.shape, generator=self.generator, device=self.device)
        new_actions, log_prob = squash(mean, log_std, noise)
        q_both = self.critic(obs, new_actions, frozen=True)
        q_new = q_both.min(0).values if cfg.actor_q == "min" else q_both.mean(0)
        actor_loss = (alpha * log_prob - q_new).mean()
        if cfg.actor_mean_penalty:
            actor_loss = actor_loss + cfg.actor_mean_penalty * mean.square().mean()
        alpha_loss = -self.log_alpha * (log_prob.detach() + self.target_entropy).mean()
        actor_norm = self._step(
            {"actor_loss": actor_loss, "alpha_loss": alpha_loss},
            self.actor_optimizer,
            self.actor_params,
        )

        # Target critics: Polyak averaging. Then one read of every value to report.
        with torch.no_grad():
            torch._foreach_lerp_(self.target_params, self.critic_params, cfg.tau)

            values = torch.stack([
                critic_loss, actor_loss, alpha_loss, alpha, critic_norm, actor_norm,
                q.mean(), -log_prob.mean(), icm_loss, intrinsic_ratio,
            ]).tolist()  # fmt: skip
        self.last_losses = dict(zip(LOSS_NAMES, values, strict=True))
        return self.last_losses

    @torch.no_grad()
    def td_target(self, rewards: Tensor, batch: Batch, alpha: Tensor) -> Tensor:
        """``r + gamma * (1 - terminated) * (min target Q(s', a') - alpha * log pi(a'|s'))``."""
        next_obs = batch.next_observations
        next_actions, next_log_prob = self.actor.sample(next_obs, batch.agent_ids, self.generator)
        next_q = self.critic_target(next_obs, next_actions).min(0).values
        next_v = next_q - alpha * next_log_prob
        return rewards + self.config.gamma * (1.0 - batch.terminated) * next_v

    def _step(
        self, losses: Mapping[str, Tensor], optimizer: torch.optim.Optimizer, clip: list[Tensor]
    ) -> Tensor:
        """Backward the sum of ``losses``, clip the gradients of ``clip``, and step unless a
        loss or the gradient norm is not finite; return the norm."""
        optimizer.zero_grad(set_to_none=True)
        total = functools.reduce(operator.add, losses.values())
        total.backward()
        norm = clip_grad_norm(clip, self.config.max_grad_norm)
        if not torch.isfinite(total.detach() + norm):
            for name, loss in losses.items():
                if not torch.isfinite(loss):
                    raise TrainingDiverged(self.updates, name, loss.item(), self.last_losses)
            name = f"gradient norm of {' + '.join(losses)}"
            raise TrainingDiverged(self.updates, name, norm.item(), self.last_losses)
        optimizer.step()
        return norm

    # ---------------------------------------------------------------- state

    def architecture(self) -> dict[str, Any]:
        """What it takes besides the config to rebuild the networks."""
        return {"obs_dim": self.obs_dim, "action_dim": self.action_dim, "n_agents": self.n_agents}

    def state_dict(self) -> dict[str, Any]:
        """Weights, temperature, optimizer states and counters (tensors and plain values)."""
        state: dict[str, Any] = {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "generator_device": self.device.type,
            "updates": self.updates,
        }
        if self.icm is not None and self.icm_optimizer is not None:
            state["icm"] = self.icm.state_dict()
            state["icm_optimizer"] = self.icm_optimizer.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if state.get("generator_device") == self.device.type:  # else: keep the seeded one
            self.generator.set_state(state["generator"].cpu())
        self.updates = int(state["updates"])
        if self.icm is not None and self.icm_optimizer is not None:
            self.icm.load_state_dict(state["icm"])
            self.icm_optimizer.load_state_dict(state["icm_optimizer"])


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Scale the gradients to a global L2 norm of at most ``max_norm``; return the norm before.

    ``torch.nn.utils.clip_grad_norm_`` without its grouping by device and dtype
    (all parameters of a module here share both), which costs more than the math.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp(max=1.0))
    return norm


LOSS_NAMES = (
    "critic_loss",
    "actor_loss",
    "alpha_loss",
    "alpha",
    "critic_grad_norm",
    "actor_grad_norm",
    "q_mean",
    "entropy",
    "icm_loss",
    "intrinsic_ratio",
)
"""Keys of the dict ``SAC.update`` returns."""


# -------------------------------------------------------------------- training


@dataclass(frozen=True, slots=True)
class Progress:
    """What ``train`` tells its callback after each environment step."""

    step: int
    """Environment steps taken."""
    losses: Mapping[str, float]
    """The last update's losses (empty before learning starts)."""
    episode_return: float | None
    """The return of the episode that ended at this step, if one did."""
    evaluation: float | None
    """The mean evaluation return measured at this step, if one was."""
    action: npt.NDArray[Any] | None = None
    """The action taken at this step, in [-1, 1] (``[n]`` for a fleet)."""
    agent: SAC | None = None
    """The agent being trained (to validate or snapshot it; do not train it)."""


@dataclass(slots=True)
class TrainResult:
    """A trained agent and how it got there."""

    agent: SAC
    steps: int
    """Environment steps taken (fewer than total_timesteps after an early stop)."""
    seconds: float
    """Wall time of the training loop, evaluations excluded."""
    eval_seconds: float = 0.0
    """Wall time of the evaluations."""
    episode_returns: list[float] = field(default_factory=list)
    """Undiscounted return of each finished training episode (extrinsic reward)."""
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    """``(step, mean deterministic return)`` of each evaluation."""
    final_return: float | None = None
    """The last evaluation's mean return."""
    stopped_early: bool = False
    """Whether ``stop_return`` was reached before ``total_timesteps``."""


class ActionScale:
    """Maps the agent's [-1, 1] to a ``Box``'s [low, high] and back."""

    def __init__(self, space: spaces.Box) -> None:
        self.low = space.low.astype(np.float32)
        self.half = ((space.high - space.low) / 2.0).astype(np.float32)

    def to_env(self, unit: FloatArray) -> FloatArray:
        """An agent's action in the env's bounds."""
        return self.low + (unit + 1.0) * self.half

    def to_unit(self, action: FloatArray) -> FloatArray:
        """An env action in [-1, 1]."""
        return np.asarray((action - self.low) / self.half - 1.0, dtype=np.float32)


def _check_env(env: gym.Env[Any, Any], config: SACConfig) -> tuple[int, int, int | None]:
    """``(obs_dim, action_dim, n_agents)`` of an env that suits the config, else a clear error."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, spaces.Box) or not isinstance(obs_space, spaces.Box):
        raise ConfigError(f"SAC needs Box spaces, got {obs_space} and {act_space}")
    bounds = (config.action_space.low, config.action_space.high)
    if not (np.all(act_space.low == bounds[0]) and np.all(act_space.high == bounds[1])):
        raise ConfigError(
            f"the env's actions are in [{act_space.low.min()}, {act_space.high.max()}] but "
            f"action_space is {bounds}: set action_space.low/high to the env's bounds"
        )
    if config.env_type == "portfolio":
        if len(obs_space.shape) != 2 or act_space.shape != obs_space.shape[:1]:
            raise ConfigError(
                f"env_type portfolio needs observations (n, d) and actions (n,), got "
                f"{obs_space.shape} and {act_space.shape}"
            )
        return obs_space.shape[1], 1, obs_space.shape[0]
    if len(obs_space.shape) != 1 or len(act_space.shape) != 1:
        raise ConfigError(
            f"env_type continuous needs flat observations and actions, got {obs_space.shape} "
            f"and {act_space.shape} (use env_type portfolio for a PortfolioTradingEnv)"
        )
    return obs_space.shape[0], act_space.shape[0], None


def evaluate(agent: SAC, env: gym.Env[Any, Any], episodes: int, seed: int) -> float:
    """Mean undiscounted return of ``episodes`` deterministic episodes (reset seeds
    ``seed, seed + 1, ...``)."""
    assert isinstance(env.action_space, spaces.Box)
    scale = ActionScale(env.action_space)
    total = 0.0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = scale.to_env(agent.act(obs, deterministic=True))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
    return total / episodes


def train(
    env: gym.Env[Any, Any],
    config: SACConfig,
    callback: Callable[[Progress], bool | None] | None = None,
    *,
    eval_env: gym.Env[Any, Any] | None = None,
    eval_every: int = 0,
    eval_episodes: int = 10,
    stop_return: float | None = None,
) -> TrainResult:
    """Train SAC on one gymnasium env for ``config.total_timesteps`` steps.

    Every ``eval_every`` steps (after learning starts) ``eval_env`` is
    evaluated; training stops early once the mean reaches ``stop_return``, or
    when ``callback`` returns True. A last evaluation runs at the end on
    ``eval_env`` (on ``env`` when there is none) unless the last step was one.
    A portfolio env (``env_type: portfolio``) adds one transition per symbol
    and step, each with the portfolio's reward, or with its own reward when the
    env reports them as ``info["symbol_rewards"]`` (``[n]``). With ``config.her`` enabled the
    env must carry return goals (``rl_agents.her.wrap_env``) and the buffer also gets each
    episode's relabelled transitions (``rl_agents.her.buffer``).
    """
    obs_dim, action_dim, n_agents = _check_env(env, config)
    assert isinstance(env.action_space, spaces.Box)
    torch.manual_seed(config.seed)  # for any library code that draws from the global generator
    agent = SAC(config, obs_dim, action_dim, n_agents=n_agents)
    replay = ReplayBuffer(config.buffer_size, obs_dim, action_dim, agent.device)
    buffer: ReplayBuffer | HERBuffer = replay
    if config.her.enabled:  # the same buffer, filled with relabelled return goals as well
        from rl_agents.her.buffer import HERBuffer

        buffer = HERBuffer.for_training(env, replay, config, agent.generator)
    agent_ids = None if n_agents is None else np.arange(n_agents)
    scale = ActionScale(env.action_space)
    env.action_space.seed(config.seed)
    eval_seed = config.seed + 1_000_000
    result = TrainResult(agent=agent, steps=0, seconds=0.0)
    started = time.perf_counter()

    obs, _ = env.reset(seed=config.seed)
    episode_return = 0.0
    for step in range(1, config.total_timesteps + 1):
        if step <= config.learning_starts:
            action = scale.to_unit(env.action_space.sample())
        else:
            action = agent.act(obs)
        next_obs, env_reward, terminated, truncated, info = env.step(scale.to_env(action))
        reward = float(env_reward)
        rewards = reward if n_agents is None else info.get("symbol_rewards", reward)
        rewards = np.multiply(rewards, config.reward_scale)
        buffer.add(obs, action, rewards, next_obs, terminated, truncated, agent_ids)
        episode_return += reward
        obs = next_obs
        ended = None
        if terminated or truncated:
            result.episode_returns.append(ended := episode_return)
            obs, _ = env.reset()
            episode_return = 0.0

        if step > config.learning_starts and step % config.train_freq == 0:
            for _ in range(config.gradient_steps):
                agent.update(buffer.sample(config.batch_size, agent.generator))

        evaluation = None
        if eval_env is not None and eval_every and step % eval_every == 0:
            if step > config.learning_starts:
                clock = time.perf_counter()
                evaluation = evaluate(agent, eval_env, eval_episodes, eval_seed)
                result.eval_seconds += time.perf_counter() - clock
                result.evaluations.append((step, evaluation))
        result.steps = step
        stop = callback is not None and bool(
            callback(Progress(step, agent.last_losses, ended, evaluation, action, agent))
        )
        if evaluation is not None and stop_return is not None and evaluation >= stop_return:
            result.stopped_early = stop = True
        if stop:
            break

    result.seconds = time.perf_counter() - started - result.eval_seconds
    if not result.evaluations or result.evaluations[-1][0] != result.steps:
        clock = time.perf_counter()
        mean = evaluate(agent, eval_env or env, eval_episodes, eval_seed)
        result.eval_seconds += time.perf_counter() - clock
        result.evaluations.append((result.steps, mean))
    result.final_return = result.evaluations[-1][1]
    return result
