"""Our SAC beside Stable-Baselines3's SAC: training speed at equal learning, update
throughput of the 143-symbol fleet, and serving latency.

Run with ``.venv/bin/python -m benchmarks.sac`` (``--steps 15000 --seeds 1 2 3`` by
default; about 15 minutes on two CPU cores). Both agents get the same
hyper-parameters: the plan's SACConfig defaults (lr 3e-4, batch 256, buffer
100,000, gamma 0.99, tau 0.005, automatic entropy with target -action_dim,
256x256 networks, one gradient step per environment step) and the same
``learning_starts``; the runs alternate between the two, seed by seed.

1. Pendulum-v1: env steps/s of the training loop (evaluations excluded) and
   the mean deterministic return of 10 episodes after ``--steps`` steps (same
   evaluation seeds for both).
   Because whole runs of the two cannot alternate, their updates are also
   timed in alternating chunks of 50 on the same transitions (median of
   ``--rounds``): the fairer ratio on a machine whose load changes.
2. Update throughput: gradient updates/s (batch 256) of our FleetActor SAC on
   PortfolioTradingEnv's 143 symbols against SB3's SAC on the single-symbol
   ContinuousTradingEnv; and symbol-steps/s of a whole learning loop (one
   gradient step per env step: one step is 143 symbol transitions for the
   fleet, one for SB3).
3. Serving latency of one batch of 143 observations (median): SACPolicy with
   one shared policy and with the fleet's per-symbol heads, SB3's
   ``predict``, on the CPU, and on the GPU when torch sees one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC as SB3SAC

from rl_agents.envs import ContinuousTradingEnv, PortfolioTradingEnv
from rl_agents.sac import SAC, ActionSpaceConfig, ReplayBuffer, SACConfig, train
from rl_agents.sac.policy import SACPolicy

REPO = Path(__file__).resolve().parents[1]
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episode i of seed s resets with seed s + EVAL_SEED_OFFSET + i (as ``train``)."""


def sb3_sac(env: gym.Env[Any, Any], config: SACConfig) -> SB3SAC:
    """SB3's SAC with the hyper-parameters of ``config``, on the CPU."""
    return SB3SAC(
        "MlpPolicy",
        env,
        learning_rate=config.learning_rate,
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        tau=config.tau,
        gamma=config.gamma,
        train_freq=config.train_freq,
        gradient_steps=config.gradient_steps,
        ent_coef="auto",
        target_entropy="auto",
        policy_kwargs={"net_arch": list(config.hidden_sizes)},
        seed=config.seed,
        device="cpu",
        verbose=0,
    )


def sb3_evaluate(model: SB3SAC, env: gym.Env[Any, Any], seed: int) -> float:
    """Mean deterministic return over EVAL_EPISODES, with the evaluation seeds of ``train``."""
    total = 0.0
    for episode in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
    return total / EVAL_EPISODES


def pendulum(steps: int, seeds: list[int], learning_starts: int) -> dict[str, Any]:
    """Training steps/s and final returns of both on Pendulum-v1, seed by seed."""
    base = SACConfig(
        total_timesteps=steps,
        learning_starts=learning_starts,
        device="cpu",
        action_space=ActionSpaceConfig(low=-2.0, high=2.0),
    )
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        config = dataclasses.replace(base, seed=seed)
        model = sb3_sac(gym.make("Pendulum-v1"), config)
        start = time.perf_counter()
        model.learn(total_timesteps=steps)
        sb3_seconds = time.perf_counter() - start
        sb3_return = sb3_evaluate(model, gym.make("Pendulum-v1"), seed)

        result = train(gym.make("Pendulum-v1"), config, eval_episodes=EVAL_EPISODES)
        assert result.final_return is not None
        row = {
            "seed": seed,
            "ours_steps_per_s": steps / result.seconds,
            "sb3_steps_per_s": steps / sb3_seconds,
            "ours_return": result.final_return,
            "sb3_return": sb3_return,
        }
        print(
            f"  pendulum seed {seed}: ours {row['ours_steps_per_s']:.0f} steps/s, return "
            f"{row['ours_return']:.0f}; SB3 {row['sb3_steps_per_s']:.0f} steps/s, return "
            f"{row['sb3_return']:.0f}",
            flush=True,
        )
        rows.append(row)
    return {"steps": steps, "learning_starts": learning_starts, "runs": rows}


def update_rounds(rounds: int, chunk: int = 50) -> dict[str, float]:
    """Median gradient updates/s of both on the same Pendulum transitions, timed in
    alternating chunks so that a busy machine slows both alike."""
    config = SACConfig(device="cpu", action_space=ActionSpaceConfig(low=-2.0, high=2.0))
    sb3 = sb3_sac(gym.make("Pendulum-v1"), config)
    sb3.learn(total_timesteps=config.learning_starts)  # random actions fill its buffer
    agent = SAC(config, 3, 1)
    buffer = ReplayBuffer(config.buffer_size, 3, 1)
    replay = sb3.replay_buffer
    assert replay is not None
    n = replay.pos
    buffer.add(
        replay.observations[:n, 0], replay.actions[:n, 0], replay.rewards[:n, 0],
        replay.next_observations[:n, 0], replay.dones[:n, 0], replay.timeouts[:n, 0],
    )  # fmt: skip
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(chunk):
            agent.update(buffer.sample(config.batch_size, agent.generator))
        ours.append(chunk / (time.perf_counter() - start))
        start = time.perf_counter()
        sb3.train(gradient_steps=chunk, batch_size=config.batch_size)
        theirs.append(chunk / (time.perf_counter() - start))
    return {
        "ours_updates_per_s": statistics.median(ours),
        "sb3_updates_per_s": statistics.median(theirs),
    }


def count_for(seconds: float, step: Callable[[], None], chunk: int) -> float:
    """Calls of ``step`` per second over about ``seconds`` (after one warm-up chunk)."""
    for _ in range(chunk):
        step()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(chunk):
            step()
        calls += chunk
    return calls / (time.perf_counter() - start)


def fleet_throughput(seconds: float, loop_steps: int) -> dict[str, float]:
    """Updates/s and learning symbol-steps/s: our fleet on 143 symbols, SB3 on one."""
    portfolio = PortfolioTradingEnv()
    shape = portfolio.observation_space.shape
    assert shape is not None
    n, obs_dim = shape
    config = SACConfig(env_type="portfolio", device="cpu", learning_starts=100)
    agent = SAC(config, obs_dim, 1, n_agents=n)
    buffer = ReplayBuffer(config.buffer_size, obs_dim, 1)
    rng = np.random.default_rng(0)
    obs, _ = portfolio.reset(seed=0)
    for _ in range(config.learning_starts):
        action = rng.uniform(-1, 1, n).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = portfolio.step(action)
        buffer.add(obs, action, float(reward), next_obs, terminated, truncated, np.arange(n))
        obs = next_obs if not (terminated or truncated) else portfolio.reset()[0]

    def update() -> None:
        agent.update(buffer.sample(256, agent.generator))

    ours_updates = count_for(seconds, update, 20)

    single = ContinuousTradingEnv()
    sb3 = sb3_sac(single, dataclasses.replace(config, env_type="continuous"))
    sb3.learn(total_timesteps=config.learning_starts)  # random actions fill the buffer
    sb3_updates = 20 * count_for(seconds, lambda: sb3.train(gradient_steps=20, batch_size=256), 1)

    loop = dataclasses.replace(config, total_timesteps=config.learning_starts + loop_steps)
    fleet_run = train(portfolio, loop, eval_episodes=1)
    start = time.perf_counter()
    sb3_loop = sb3_sac(single, dataclasses.replace(loop, env_type="continuous"))
    sb3_loop.learn(total_timesteps=loop.total_timesteps)
    sb3_loop_seconds = time.perf_counter() - start
    return {
        "ours_updates_per_s": ours_updates,
        "sb3_updates_per_s": sb3_updates,
        "ours_symbol_steps_per_s": n * loop.total_timesteps / fleet_run.seconds,
        "sb3_symbol_steps_per_s": loop.total_timesteps / sb3_loop_seconds,
        "symbols": n,
    }


def median_latency(call: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``call`` over ``repeats`` calls (after 50 warm-up calls)."""
    for _ in range(50):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latency(repeats: int) -> dict[str, float]:
    """Median latency in seconds of one batch of 143 real observations."""
    portfolio = PortfolioTradingEnv()
    obs, _ = portfolio.reset(seed=0)
    n, d = obs.shape
    cpu = SACConfig(device="cpu")
    shared = SACPolicy(SAC(cpu, d, 1), "bench")
    fleet = SACPolicy(SAC(dataclasses.replace(cpu, env_type="portfolio"), d, 1, n_agents=n), "b")
    sb3 = sb3_sac(ContinuousTradingEnv(), cpu)
    found = {
        "ours_shared_cpu": median_latency(lambda: shared.act(obs), repeats),
        "ours_fleet_cpu": median_latency(lambda: fleet.act(obs), repeats),
        "sb3_cpu": median_latency(lambda: sb3.predict(obs, deterministic=True), repeats),
    }
    if torch.cuda.is_available():
        gpu = dataclasses.replace(cpu, device="cuda")
        shared_gpu = SAC(gpu, d, 1)
        fleet_gpu = SAC(dataclasses.replace(gpu, env_type="portfolio"), d, 1, n_agents=n)
        sb3_gpu = SB3SAC("MlpPolicy", ContinuousTradingEnv(), device="cuda", verbose=0)
        found["ours_shared_gpu"] = median_latency(
            lambda: shared_gpu.act(obs, deterministic=True), repeats
        )
        found["ours_fleet_gpu"] = median_latency(
            lambda: fleet_gpu.act(obs, deterministic=True), repeats
        )
        found["sb3_gpu"] = median_latency(lambda: sb3_gpu.predict(obs, deterministic=True), repeats)
    return found


def main() -> None:
    """Measure, print the table and the ratios, write benchmarks/results/sac.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=15_000, help="Pendulum steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per update throughput entry")
    parser.add_argument("--loop-steps", type=int, default=500, help="learning steps, loop entry")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved update rounds")
    parser.add_argument("--repeats", type=int, default=2_000, help="latency calls per entry")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both agents)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "sac.json")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(
        f"benchmarks/sac.py  ({platform.machine()}, {os.cpu_count()} cpus, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, python "
        f"{platform.python_version()})",
        flush=True,
    )
    results = {
        "pendulum": pendulum(args.steps, args.seeds, args.learning_starts),
        "pendulum_updates": update_rounds(args.rounds),
        "fleet": fleet_throughput(args.seconds, args.loop_steps),
        "latency_s": latency(args.repeats),
    }
    runs = results["pendulum"]["runs"]

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in runs)

    fleet, lat, rounds = results["fleet"], results["latency_s"], results["pendulum_updates"]
    ms = {k: 1e3 * v for k, v in lat.items()}
    # (entry, ours, SB3, how to compare): "x" ours/SB3 for rates, SB3/ours for latencies
    # (both: times faster), "diff" ours - SB3 for returns.
    table: list[tuple[str, float, float, str]] = [
        ("Pendulum-v1 training, env steps/s", mean("ours_steps_per_s"), mean("sb3_steps_per_s"),
         "x"),
        (f"Pendulum-v1 eval return after {args.steps} steps", mean("ours_return"),
         mean("sb3_return"), "diff"),
        ("Pendulum-v1 updates/s, interleaved rounds", rounds["ours_updates_per_s"],
         rounds["sb3_updates_per_s"], "x"),
        ("updates/s, batch 256 (ours: fleet of 143)", fleet["ours_updates_per_s"],
         fleet["sb3_updates_per_s"], "x"),
        ("learning symbol-steps/s (ours: 143 per step)", fleet["ours_symbol_steps_per_s"],
         fleet["sb3_symbol_steps_per_s"], "x"),
        ("latency, 143 obs, CPU, ms (ours: shared)", ms["ours_shared_cpu"], ms["sb3_cpu"], "/x"),
        ("latency, 143 obs, CPU, ms (ours: fleet)", ms["ours_fleet_cpu"], ms["sb3_cpu"], "/x"),
    ]  # fmt: skip
    if "sb3_gpu" in ms:
        table += [
            (
                "latency, 143 obs, GPU, ms (ours: shared)",
                ms["ours_shared_gpu"],
                ms["sb3_gpu"],
                "/x",
            ),
            ("latency, 143 obs, GPU, ms (ours: fleet)", ms["ours_fleet_gpu"], ms["sb3_gpu"], "/x"),
        ]
    header = f"{'':<48}{'ours':>12}{'SB3':>12}{'ours vs SB3':>16}"
    print("\n" + header + "\n" + "-" * len(header))
    for name, ours, theirs, how in table:
        if how == "diff":
            versus = f"{ours - theirs:+.0f}"
        else:
            versus = f"{(ours / theirs if how == 'x' else theirs / ours):.2f}x faster"
        print(f"{name:<48}{ours:>12,.2f}{theirs:>12,.2f}{versus:>16}")
    print("\nper seed (Pendulum-v1): seed, ours steps/s, SB3 steps/s, ours return, SB3 return")
    for r in runs:
        print(
            f"  {r['seed']}  {r['ours_steps_per_s']:8.0f}  {r['sb3_steps_per_s']:8.0f}"
            f"  {r['ours_return']:8.0f}  {r['sb3_return']:8.0f}"
        )
    ratio = mean("ours_steps_per_s") / mean("sb3_steps_per_s")
    print(f"\ngoal: >= 2x SB3's steps/s on Pendulum at equal learning; measured {ratio:.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "command": " ".join(["python", "-m", "benchmarks.sac", *sys.argv[1:]]),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                **results,
                "table": [{"entry": n, "ours": o, "sb3": t} for n, o, t, _ in table],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
