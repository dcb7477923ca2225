"""`docker compose up` on a real Docker Engine, checked as a user checks it (make compose-test).

One stack for the module, on the offline image set (deploy/offline/build.sh;
no registry is reachable here) and a Docker Engine started by
deploy/local/docker/docker.sh when none answers (it is stopped again at the
end). The same data is first replayed by the local processes of ``tradingbot
demo`` on the stack's own broker; then the compose services replay it, and
``docker compose kill portfolio-manager`` lands in the middle of the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.events import DecisionRecorded, Event, PortfolioClosed, StepCompleted
from core.report import summarize
from services import kafka
from services.db import local as local_db
from services.demo import new_run_id
from services.monitoring import read_alerts
from services.ports import free_ports
from streams.codec import CODEC, CodecError
from streams.topics import PORTFOLIO_EVENTS, SIM_CLOCK

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ENGINE = DEPLOY / "local" / "docker" / "docker.sh"
SYMBOLS = 30
STEPS = 245
"""The whole bundled year: the collapse detector judges an agent from its 50th action on, and
on a fast box the run still lasts long enough for Prometheus to discover and scrape every
service (with 60 or 90 steps it could end first) and for the kill to come mid-run."""
KILL_AT_STEP = 10
SINK_GROUP = "tradingbot-timescale-sink"
pytestmark = pytest.mark.timeout(3600)  # the first test builds every image from scratch
LONG_RUNNING = ("kafka", "timescaledb", "prometheus", "alertmanager", "collapse-detector")
PIPELINE = ("market-replay", "symbol-agent", "portfolio-manager")
SCRAPED = {"market-replay", "symbol-agent", "portfolio-manager", "collapse-detector"}
SCRAPED |= {"timescale-sink", "prometheus"}
MONITORING = ("prometheus", "alertmanager", "collapse-detector", "timescale-sink")
"""Started (and healthy) before the pipeline, so that Prometheus scrapes the whole run."""


def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run a command; fail with its output when it fails."""
    done = subprocess.run(
        [str(a) for a in args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def eventually(
    what: str, probe: Callable[[], Any], timeout_s: float, check: Callable[[], None] = lambda: None
) -> Any:
    """The first truthy answer of ``probe`` within ``timeout_s``; ``check`` raises to give up."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        check()
        try:
            last = probe()
        except OSError as e:  # a server not answering yet
            last = e
        if last:
            return last
        time.sleep(1.0)
    pytest.fail(f"{what}: not within {timeout_s:.0f}s (last: {last!r})")


@dataclass
class Compose:
    """``docker compose`` on the stack's project, env file and the offline image set."""

    env: dict[str, str]
    env_file: Path
    project: str

    def command(self) -> list[str]:
        return [
            "docker", "compose", "--project-name", self.project, "--env-file", str(self.env_file),
            "-f", str(DEPLOY / "docker-compose.yml"),
            "-f", str(DEPLOY / "docker-compose.offline.yml"),
        ]  # fmt: skip

    def __call__(self, *args: str, timeout: float = 900) -> str:
        return run(*self.command(), *args, env=self.env, timeout=timeout)

    def inspect(self, service: str) -> dict[str, Any]:
        """``docker inspect`` of the service's one container."""
        (cid,) = self("ps", "-a", "-q", service).split()
        return dict(json.loads(run("docker", "inspect", cid, env=self.env))[0])

    def state(self, service: str) -> dict[str, Any]:
        """``docker inspect``'s State of the service's one container."""
        return dict(self.inspect(service)["State"])

    def ensure_alive(self, services: tuple[str, ...]) -> Callable[[], None]:
        def check() -> None:
            for service in services:
                state = self.state(service)
                if state["Status"] == "exited" and state["ExitCode"] != 0:
                    pytest.fail(
                        f"{service} exited {state['ExitCode']}:\n"
                        + self("logs", "--no-log-prefix", "--tail", "40", service)
                    )

        return check


@dataclass
class Observed:
    """What the module's run showed; each test checks one part."""

    run_id: str
    reference_run_id: str
    compose: Compose
    ports: dict[str, int]
    db_url: str
    bootstrap: str
    reference: list[bytes] = field(default_factory=list)
    ledger: list[bytes] = field(default_factory=list)
    ledger_at_kill: list[bytes] = field(default_factory=list)
    targets_during_run: list[dict[str, Any]] = field(default_factory=list)
    db_path: str = ""
    db_rows: dict[str, int] = field(default_factory=dict)
    critical_on_monitor_alerts: set[str] = field(default_factory=set)
    paged_at_alertmanager: set[str] = field(default_factory=set)
    down_left: dict[str, str] = field(default_factory=dict)


async def raw_ledger(bootstrap: str, run_id: str) -> list[bytes]:
    """The run's records on portfolio.events, in log order, as their bytes."""
    client = kafka.consumer(bootstrap, "compose-test-ledger")
    await kafka.start(client, bootstrap)
    try:
        await kafka.assign(client, [PORTFOLIO_EVENTS.name], from_beginning=True)
        end = await client.end_offsets(list(client.assignment()))
        found: list[bytes] = []
        deadline = time.monotonic() + 60
        while [tp for tp, offset in end.items() if await client.position(tp) < offset]:
            if time.monotonic() > deadline:
                raise TimeoutError("could not read portfolio.events to its end")
            for records in (await client.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        event = CODEC.decode(record.value)
                    except CodecError:
                        continue
                    if isinstance(event, Event) and event.run_id == run_id and record.value:
                        found.append(record.value)
        return found
    finally:
        await client.stop()


async def steps_completed(bootstrap: str, run_id: str) -> int:
    events = await kafka.read_run(bootstrap, SIM_CLOCK.name, run_id)
    return sum(isinstance(e, StepCompleted) for e in events)


def decoded(records: list[bytes]) -> list[Event]:
    return [e for e in (CODEC.decode(r) for r in records) if isinstance(e, Event)]


@pytest.fixture(scope="module")
def engine() -> Iterator[dict[str, str]]:
    """The environment of a Docker Engine: the one that answers, or a private one started here."""
    was_running = subprocess.run(["bash", ENGINE, "status"], capture_output=True).returncode == 0
    host = run("bash", ENGINE, "start", timeout=600).strip().splitlines()[-1]
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}
    try:
        yield env
    finally:
        if not was_running:
            run("bash", ENGINE, "stop")


@pytest.fixture(scope="module")
def observed(
    engine: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    """Build, start, replay (with a kill in the middle), read back, then `down -v`."""
    tmp = tmp_path_factory.mktemp("compose")
    t0 = time.monotonic()
    run("bash", DEPLOY / "offline" / "build.sh", env=engine, timeout=1800)
    print(f"\noffline image set: {time.monotonic() - t0:.0f}s", file=sys.stderr)

    names = ("kafka", "db", "prometheus", "alertmanager", "grafana", "metrics")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    run_id = new_run_id("cmps")  # as long as the demo's ids: the ledgers compare byte for byte
    env_file = tmp / "env"
    secrets_ = {"POSTGRES_PASSWORD": secrets.token_hex(12), "GRAFANA_ADMIN_PASSWORD": "unused"}
    env_file.write_text(
        "\n".join(
            [
                f"TRADINGBOT_RUN_ID={run_id}",
                f"TRADINGBOT_REPLAY_SYMBOLS={SYMBOLS}",
                f"TRADINGBOT_REPLAY_STEPS={STEPS}",
                "TRADINGBOT_AGENT_FLEET=mixed",
                "TRADINGBOT_AGENT_POLICY=momentum",
                "POSTGRES_USER=tradingbot",
                "POSTGRES_DB=tradingbot",
                "GRAFANA_ADMIN_USER=admin",
                *(f"{k}={v}" for k, v in secrets_.items()),
                f"TRADINGBOT_KAFKA_PORT={ports['kafka']}",
                f"TRADINGBOT_DB_PORT={ports['db']}",
                f"TRADINGBOT_PROMETHEUS_PORT={ports['prometheus']}",
                f"TRADINGBOT_ALERTMANAGER_PORT={ports['alertmanager']}",
                f"TRADINGBOT_GRAFANA_PORT={ports['grafana']}",
            ]
        )
        + "\n"
    )
    compose = Compose(engine, env_file, f"tradingbot-test-{secrets.token_hex(3)}")
    bootstrap = f"127.0.0.1:{ports['kafka']}"
    seen = Observed(
        run_id=run_id,
        reference_run_id="",
        compose=compose,
        ports=ports,
        db_url=(
            f"postgresql://tradingbot:{secrets_['POSTGRES_PASSWORD']}@127.0.0.1:{ports['db']}"
            "/tradingbot"
        ),
        bootstrap=bootstrap,
    )
    build: subprocess.Popen[bytes] | None = None
    try:
        compose("up", "-d", "--wait", "kafka")
        # The services' image builds while the local processes replay the reference run.
        build_log = tmp / "build.log"
        with build_log.open("w") as log:
            build = subprocess.Popen(
                [*compose.command(), "build"], env=engine, stdout=log, stderr=subprocess.STDOUT
            )

        # The reference: the same data replayed by the local processes of the demo.
        summary_json = tmp / "reference.json"
        t0 = time.monotonic()
        run(
            REPO / ".venv" / "bin" / "tradingbot", "demo", "--bootstrap", bootstrap,
            "--symbols", str(SYMBOLS), "--steps", str(STEPS), "--fleet", "mixed",
            "--no-monitoring", "--no-database", "--no-progress",
            "--metrics-port", str(ports["metrics"]), "--json", summary_json,
            "--runs-dir", tmp / "runs", timeout=900,
            env={**os.environ, "TRADINGBOT_AGENT_POLICY": "momentum"},
        )  # fmt: skip
        print(f"local-process reference run: {time.monotonic() - t0:.0f}s", file=sys.stderr)
        if build.wait(timeout=1800) != 0:
            pytest.fail(f"docker compose build failed:\n{build_log.read_text()[-4000:]}")
        print(f"docker compose build (beside it): {time.monotonic() - t0:.0f}s", file=sys.stderr)
        reference_id = json.loads(summary_json.read_text())["run_id"]
        seen.reference_run_id = reference_id
        seen.reference = asyncio.run(raw_ledger(bootstrap, reference_id))

        t0 = time.monotonic()
        # The monitoring first: a run on a fast box can end before a Prometheus that is still
        # starting has scraped every service once.
        compose("up", "-d", "--wait", *MONITORING)
        compose("up", "-d")
        alive = compose.ensure_alive(PIPELINE)

        # Every target up while the run is in progress, then the kill.
        last_targets: list[dict[str, Any]] = []

        def all_up() -> list[dict[str, Any]] | None:
            url = f"http://127.0.0.1:{ports['prometheus']}/api/v1/targets?state=active"
            targets = get_json(url)["data"]["activeTargets"]
            last_targets[:] = targets
            services = {t["labels"].get("service", t["labels"]["job"]) for t in targets}
            if services >= SCRAPED and all(t["health"] == "up" for t in targets):
                return list(targets)
            return None

        report_at = time.monotonic() + 170  # before eventually's 180 s: say what is down

        def targets_alive() -> None:
            alive()
            if time.monotonic() > report_at:
                down = [t for t in last_targets if t["health"] != "up"]
                seen_ = {t["labels"].get("service", t["labels"]["job"]) for t in last_targets}
                pytest.fail(
                    f"Prometheus targets not all up: missing {sorted(SCRAPED - seen_)}, down "
                    + "; ".join(
                        f"{t['labels'].get('service', t['labels']['job'])} {t['scrapeUrl']}: "
                        f"{t['health']} ({t.get('lastError', '')})"
                        for t in down
                    )
                    + "\n"
                    + compose("ps", "-a")
                )

        seen.targets_during_run = eventually(
            "every Prometheus target up", all_up, 180, targets_alive
        )
        eventually(
            f"step {KILL_AT_STEP} of the compose run",
            lambda: asyncio.run(steps_completed(bootstrap, run_id)) >= KILL_AT_STEP,
            300,
            alive,
        )
        compose("kill", "portfolio-manager")
        seen.ledger_at_kill = asyncio.run(raw_ledger(bootstrap, run_id))
        compose("start", "portfolio-manager")

        eventually(
            "the compose run's PortfolioClosed",
            lambda: any(isinstance(e, PortfolioClosed) for e in decoded(
                asyncio.run(raw_ledger(bootstrap, run_id)))),
            600,
            alive,
        )  # fmt: skip
        for service in PIPELINE:
            try:
                eventually(
                    f"{service} exits 0 at the end of the run",
                    lambda s=service: compose.state(s)["Status"] == "exited",  # type: ignore[misc]
                    120,
                    alive,
                )
            except pytest.fail.Exception as e:
                state = compose.state(service)
                pytest.fail(
                    f"{e}\n{service}: {state['Status']}, exit code {state['ExitCode']}, "
                    f"restarted {compose.inspect(service)['RestartCount']} times; its last lines:\n"
                    + compose("logs", "--no-log-prefix", "--tail", "40", service)
                )
        print(f"compose run (with the kill): {time.monotonic() - t0:.0f}s", file=sys.stderr)
        seen.ledger = asyncio.run(raw_ledger(bootstrap, run_id))

        sink = compose.ensure_alive(("timescale-sink",))
        asyncio.run(local_db.wait_for_sink(bootstrap, SINK_GROUP, sink))
        found = local_db.run_rows(seen.db_url, run_id)
        seen.db_path, seen.db_rows = found.path, found.rows

        alerts = asyncio.run(read_alerts(bootstrap, run_id))
        seen.critical_on_monitor_alerts = {
            agent
            for agent, a in alerts.items()
            if any(d.severity == "critical" for d in a.detected)
        }
        url = f"http://127.0.0.1:{ports['alertmanager']}/api/v2/alerts"

        def paged() -> set[str]:
            return {
                a["labels"].get("agent", "")
                for a in get_json(url)
                if a["labels"].get("alertname") == "ActionCollapseCritical"
            }

        # Prometheus evaluates every 5 s; Alertmanager gets what fires (up to a minute).
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            seen.paged_at_alertmanager = paged()
            if seen.paged_at_alertmanager >= seen.critical_on_monitor_alerts:
                break
            time.sleep(2)
        time.sleep(10)  # and nothing more arrives for the healthy agents
        seen.paged_at_alertmanager = paged()
    finally:
        if build is not None and build.poll() is None:
            build.kill()
            build.wait()
        t0 = time.monotonic()
        compose("down", "-v", "--remove-orphans", timeout=300)
        print(f"docker compose down -v: {time.monotonic() - t0:.0f}s", file=sys.stderr)
    label = f"label=com.docker.compose.project={compose.project}"
    seen.down_left = {
        kind: run("docker", *cmd, "--filter", label, env=engine).strip()
        for kind, cmd in {
            "containers": ("ps", "-a", "-q"),
            "networks": ("network", "ls", "-q"),
            "volumes": ("volume", "ls", "-q"),
        }.items()
    }
    yield seen


def test_summary_read_back_from_portfolio_events_equals_the_local_process_run(
    observed: Observed,
) -> None:
    ours = asdict(summarize(decoded(observed.ledger)))
    theirs = asdict(summarize(decoded(observed.reference)))
    assert ours.pop("run_id") == observed.run_id
    assert theirs.pop("run_id") == observed.reference_run_id
    assert ours["complete"] and ours["steps"] == STEPS and ours["symbols"] == SYMBOLS
    assert ours == theirs


def test_kill_of_the_portfolio_manager_mid_run_still_gives_the_same_ledger(
    observed: Observed,
) -> None:
    at_kill = decoded(observed.ledger_at_kill)
    assert not any(isinstance(e, PortfolioClosed) for e in at_kill), "the kill came after the end"
    assert any(isinstance(e, DecisionRecorded) for e in at_kill), "the kill came before the start"
    old, new = observed.reference_run_id.encode(), observed.run_id.encode()
    assert len(old) == len(new)
    expected = [r.replace(old, new) for r in observed.reference]
    assert observed.ledger == expected


def test_rows_of_the_run_are_in_timescaledb(observed: Observed) -> None:
    assert observed.db_path.startswith("timescaledb")
    assert observed.db_rows and all(n > 0 for n in observed.db_rows.values()), observed.db_rows


def test_every_prometheus_target_was_up_during_the_run(observed: Observed) -> None:
    targets = observed.targets_during_run
    assert {t["labels"].get("service", t["labels"]["job"]) for t in targets} >= SCRAPED
    assert all(t["health"] == "up" for t in targets)


def test_collapse_alerts_fire_for_exactly_the_collapsed_agents_and_reach_alertmanager(
    observed: Observed,
) -> None:
    decisions = [e for e in decoded(observed.ledger) if isinstance(e, DecisionRecorded)]
    collapsed = {e.symbol for e in decisions if e.policy == "always-buy-small"}
    assert len(collapsed) == SYMBOLS // 10
    assert observed.critical_on_monitor_alerts == collapsed
    assert observed.paged_at_alertmanager == collapsed


def test_down_v_leaves_no_container_network_or_volume(observed: Observed) -> None:
    assert observed.down_left == {"containers": "", "networks": "", "volumes": ""}


def test_compose_config_validates_both_files_and_names_a_missing_secret(
    engine: dict[str, str], tmp_path: Path
) -> None:
    example = (DEPLOY / ".env.example").read_text()
    filled = example.replace("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=p1\n")
    filled = filled.replace("GRAFANA_ADMIN_PASSWORD=\n", "GRAFANA_ADMIN_PASSWORD=p2\n")
    env_file = tmp_path / "env"
    files = (
        "-f",
        str(DEPLOY / "docker-compose.yml"),
        "-f",
        str(DEPLOY / "docker-compose.offline.yml"),
    )
    for chosen in (files[:2], files):
        env_file.write_text(filled)
        run("docker", "compose", "--env-file", env_file, *chosen, "config", "--quiet", env=engine)
        env_file.write_text(example)  # the passwords empty, as shipped
        refused = subprocess.run(
            ["docker", "compose", "--env-file", str(env_file), *chosen, "config", "--quiet"],
            env=engine, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "PASSWORD" in refused.stderr and "deploy/.env.example" in refused.stderr
