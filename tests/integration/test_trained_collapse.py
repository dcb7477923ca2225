"""The collapse, trained rather than staged, and caught in training and when served.

A discrete DQN is trained with the original fleet's sparse reward (the
realised P&L of completed trades, 0 on every other step) by the user's
command, ``python -m rl_agents.baselines.ppo --algorithm dqn --reward
completed-trades ... --validate-every 25000``. Its greedy policy collapses on
days it has not seen: the validation watch pauses training (exit 3) while
the actions it sampled on training days (epsilon-greedy) still look diverse.
The paused zip is then served by the symbol agents through the pipeline on
the held-out days, on the session's broker, watched by a real collapse
detector: most agents raise a critical entropy alert. The cure, the shipped
SAC fleet, answers the same days in a run of its own and raises none.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from detector_support import REPO, detector_env, start_detector

from core.bars import BarFrame
from rl_agents.baselines.ppo import VALIDATION, main, sidecar_path
from rl_agents.data import chronological_split, load_bars, universe
from services.monitoring import (
    AgentAlerts,
    MonitoringError,
    read_alerts,
    start_detector_at_end,
    wait_for_detector,
)
from services.pipeline import run_lockstep
from services.symbol_agent.app import AgentConfig

pytestmark = pytest.mark.integration

SAC_FLEET = REPO / "rl_agents" / "fleets" / "sac-fleet.pt"
BUDGET = 100_000
TRAIN = [
    "--algorithm", "dqn", "--reward", "completed-trades", "--learning-rate", "0.001",
    "--total-timesteps", str(BUDGET), "--validate-every", "25000",
]  # fmt: skip
"""The training command's options (143 symbols in 8 envs, seed 0, window 10)."""


def held_out() -> BarFrame:
    """The days after the training span (validation and test), all 143 symbols."""
    frame = universe(load_bars("bytetheory"), 143)
    start = chronological_split(frame.n_steps)["validation"][0]
    return frame.window(start, frame.n_steps)


def alerted(alerts: dict[str, AgentAlerts], metric: str, severity: str = "") -> set[str]:
    """The agents with a ``CollapseDetected`` on ``metric`` (of ``severity``, if given)."""
    return {
        agent
        for agent, found in alerts.items()
        if any(a.metric == metric and severity in ("", a.severity) for a in found.detected)
    }


@dataclass
class Trained:
    code: int
    zip: Path
    record: dict[str, object]


@dataclass
class Served:
    agents: int
    alerts: dict[str, dict[str, AgentAlerts]]
    """By policy (``dqn``, ``sac``), the run's alerts by agent."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    out = tmp_path_factory.mktemp("collapse") / "dqn.zip"
    code = main(["--out", str(out), *TRAIN])
    return Trained(code, out, json.loads(sidecar_path(out).read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def served(
    trained: Trained,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    port_finder: Callable[[int], list[int]],
) -> Iterator[Served]:
    assert trained.zip.is_file(), "training wrote no zip"
    tmp = tmp_path_factory.mktemp("collapse-served")
    frame = held_out()
    policies = {"dqn": f"dqn:{trained.zip}", "sac": f"sac:{SAC_FLEET}"}
    ids = {name: f"it-trained-collapse-{name}" for name in policies}
    detectors = []
    for (name, run_id), port in zip(ids.items(), port_finder(len(ids)), strict=True):
        env = detector_env(kafka_bootstrap, run_id, TRADINGBOT_DETECTOR_METRICS_PORT=str(port))
        asyncio.run(start_detector_at_end(kafka_bootstrap, env["TRADINGBOT_DETECTOR_APP_ID"]))
        detectors.append(start_detector(env, tmp / f"{name}.log"))

    async def scenario() -> None:
        await asyncio.gather(
            *(
                run_lockstep(
                    bootstrap=kafka_bootstrap,
                    run_id=ids[name],
                    frame=frame,
                    agent=AgentConfig(policy=policy),
                )
                for name, policy in policies.items()
            )
        )

    try:
        asyncio.run(scenario())
        alerts = {}
        for name, run_id in ids.items():
            try:
                asyncio.run(wait_for_detector(kafka_bootstrap, f"collapse-detector-{run_id}", 180))
            except MonitoringError as e:
                log = (tmp / f"{name}.log").read_text()[-4000:]
                raise AssertionError(f"{e}; the worker's log ends:\n{log}") from e
            alerts[name] = asyncio.run(read_alerts(kafka_bootstrap, run_id))
        yield Served(agents=frame.n_symbols, alerts=alerts)
    finally:
        for process in detectors:
            process.terminate()
            process.wait(timeout=30)


def test_training_pauses_on_the_collapse_of_the_greedy_policy_on_the_validation_days(
    trained: Trained,
) -> None:
    pause = trained.record["pause"]

    assert trained.code == 3, "training was not paused on a collapse"
    assert isinstance(pause, dict) and pause["env"] == VALIDATION
    assert pause["diversity"] < pause["threshold"] == 0.2
    assert int(pause["step"]) < BUDGET and trained.record["timesteps"] == pause["step"]
    validation = trained.record["validation"]
    assert isinstance(validation, dict) and validation["dominant_share"] > 0.8


def test_the_sampled_actions_on_training_days_did_not_show_it(trained: Trained) -> None:
    """Why the validation watch is needed: the monitor of the sampled actions saw no collapse."""
    lowest = trained.record["training_diversity"]

    assert isinstance(lowest, float) and lowest > 0.2


def test_served_the_collapsed_policy_raises_collapse_alerts_on_nearly_every_agent(
    served: Served,
) -> None:
    alerts = served.alerts["dqn"]
    entropy, dominance = alerted(alerts, "entropy"), alerted(alerts, "dominance")
    critical = alerted(alerts, "entropy", "critical")
    found = f"entropy {len(entropy)} ({len(critical)} critical), dominance {len(dominance)}"

    assert len(entropy) > 0.9 * served.agents, found
    assert len(dominance) > 0.9 * served.agents, found
    assert len(critical) > served.agents / 3, found


def test_the_sac_fleet_on_the_same_days_raises_no_entropy_or_dominance_alert(
    served: Served,
) -> None:
    alerts = served.alerts["sac"]

    assert alerted(alerts, "entropy") == alerted(alerts, "dominance") == set()
