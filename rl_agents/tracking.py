"""Training runs in MLflow: the setup as parameters, the progress as metrics by step, the
checkpoint and the run record as artifacts, the outcome as the run's status.

``TrainingTracker`` is a thin layer over ``mlflow.MlflowClient`` (one run, an
explicit tracking URI, no global state): ``tradingbot train --mlflow`` (or
``--mlflow-uri URI``) builds one and calls it where the run record is
written, so the two hold the same points. Names and the local store are in
docs/tracking.md.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psutil
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

from rl_agents.sac.agent import Progress
from rl_agents.sac.config import ConfigError, SACConfig

if TYPE_CHECKING:
    from rl_agents.selection import Validation
    from rl_agents.training_monitor import Outcome, TrainingMonitor

DEFAULT_EXPERIMENT = "tradingbot"
STORE_FILE = "mlflow.db"
"""The local store's SQLite file, beside the checkpoint."""
ARTIFACTS_DIR = "mlartifacts"
"""Where a SQLite store's runs keep their artifacts: beside the database file."""
COMPONENTS = ("rewards", "options", "her")
"""``rl_agents`` packages whose ``report(env) -> dict[str, float]`` is logged when they have one."""
STATUS: dict[str, str] = {
    "finished": RunStatus.to_string(RunStatus.FINISHED),
    "paused": RunStatus.to_string(RunStatus.KILLED),
    "diverged": RunStatus.to_string(RunStatus.FAILED),
}
"""The MLflow status of each outcome of the run record."""
_MAX_PARAM_LENGTH = 6000
"""MLflow refuses longer parameter values."""


class TrackingError(ConfigError):
    """The tracking URI cannot be used; the message names it and says why, on one line."""


def local_store(checkpoint: str | Path) -> str:
    """The URI of the local store beside ``checkpoint``: ``sqlite:///<its folder>/mlflow.db``."""
    return f"sqlite:///{(Path(checkpoint).parent / STORE_FILE).resolve()}"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"seed": 0}}`` as ``{"training.seed": 0}``: the ``--section.key`` names."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def progress_metrics(progress: Progress, monitor: TrainingMonitor) -> dict[str, float]:
    """What one progress line of the run record holds, as MLflow metrics.

    ``train/<key>`` for each value of the last update (losses, gradient norms,
    temperature, Q-value, policy entropy, intrinsic reward share), ``eval_return``
    when an evaluation ran at this step, ``actions/...`` for the training
    monitor's collapse statistics.
    """
    metrics = {f"train/{key}": float(value) for key, value in progress.losses.items()}
    if progress.evaluation is not None:
        metrics["eval_return"] = float(progress.evaluation)
    stats = monitor.stats()
    if stats:
        lowest = min(stats, key=lambda s: s.diversity)
        buy, sell, hold = lowest.kind_shares
        metrics |= {
            "actions/min_diversity": lowest.diversity,
            "actions/mean_diversity": sum(s.diversity for s in stats) / len(stats),
            "actions/entropy": lowest.entropy,
            "actions/dominant_bin": lowest.dominant_bin,
            "actions/dominant_kind": lowest.dominant_kind,
            "actions/buy_share": buy,
            "actions/sell_share": sell,
            "actions/hold_share": hold,
            "actions/repeat_run": float(lowest.repeat_run),
            "actions/kind_run": float(lowest.kind_run),
            "actions/saturation": lowest.saturation,
            "actions/window": float(lowest.actions),
        }
    return metrics


def validation_metrics(validation: Validation, selectable: bool) -> dict[str, float]:
    """One validation of the checkpoint selector: ``validation/...``."""
    return {
        "validation/return": validation.total_return,
        "validation/diversity": validation.diversity,
        "validation/dominant_bin": validation.dominant_bin,
        "validation/trade_frequency": validation.trade_frequency,
        "validation/passed": float(validation.passed),
        "validation/selectable": float(selectable),
    }


def component_metrics(env: Any) -> dict[str, float]:
    """``<piece>/<name>`` for what ``rl_agents.<piece>.report(env)`` returns, for each piece of
    ``COMPONENTS`` that has such a function (the reward components, options, HER)."""
    metrics: dict[str, float] = {}
    for name in COMPONENTS:
        try:
            module = importlib.import_module(f"rl_agents.{name}")
        except ImportError:
            continue
        report = getattr(module, "report", None)
        if not callable(report):
            continue
        try:
            values = report(env)
        except NotImplementedError:
            continue
        for key, value in (values or {}).items():
            metrics[f"{name}/{key}"] = float(value)
    return metrics


class TrainingTracker:
    """One MLflow run of a training run.

    ``start`` opens it (a ``TrackingError`` when the URI cannot be used);
    ``finish`` logs the outcome and the artifacts and ends it with the
    outcome's status (``STATUS``). Used as a context manager, a run left
    open by an exception ends ``FAILED`` (``KILLED`` on Ctrl-C).
    """

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.ended = False
        self._last = (0, time.perf_counter())
        """(step, perf_counter) of the last progress point."""
        self._eval_steps: set[int] = set()
        self._process = psutil.Process()

    @classmethod
    def start(
        cls,
        uri: str,
        experiment: str,
        run_name: str,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> TrainingTracker:
        """Open a run named ``run_name`` in ``experiment`` (created when missing) at ``uri``."""
        try:
            client = MlflowClient(tracking_uri=uri)
            found = client.get_experiment_by_name(experiment)
            experiment_id = (
                found.experiment_id
                if found is not None
                else client.create_experiment(experiment, artifact_location=_artifact_root(uri))
            )
            run = client.create_run(
                experiment_id, run_name=run_name, tags=resolve_tags(dict(tags or {}))
            )
        except (MlflowException, OSError) as e:
            raise TrackingError(f"cannot track to {uri}: {_one_line(e)}") from e
        return cls(client, run.info.run_id)

    def __enter__(self) -> TrainingTracker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.ended:
            return
        if kind is None:
            self.end(STATUS["finished"])
            return
        status = RunStatus.FAILED if issubclass(kind, Exception) else RunStatus.KILLED
        with contextlib.suppress(MlflowException, OSError):  # the error at hand is the one to see
            if error is not None:
                self.set_tags({"error": _one_line(error)[:5000]})
            self.end(RunStatus.to_string(status))

    # ------------------------------------------------------------ logging

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log each value as a parameter (its ``str``; over 6,000 characters: cut, with ...)."""
        self.client.log_batch(
            self.run_id, params=[Param(key, _param_value(value)) for key, value in params.items()]
        )

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        """Log each value that is not None as the metric's value at ``step``."""
        now = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if value is not None
        ]
        if entries:
            self.client.log_batch(self.run_id, metrics=entries)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set each tag to ``str(value)``."""
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path) -> None:
        """Copy the file at ``path`` into the run's artifacts (under its name)."""
        self.client.log_artifact(self.run_id, str(path))

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        """Write ``data`` into the run's artifacts as ``name`` (``.json`` or ``.yaml``)."""
        self.client.log_dict(self.run_id, dict(data), name)

    def end(self, status: str) -> None:
        """End the run with ``status`` (``FINISHED``, ``FAILED``, ``KILLED``)."""
        self.client.set_terminated(self.run_id, status)
        self.ended = True

    # ------------------------------------------------------------ training

    def log_setup(
        self,
        config: SACConfig,
        *,
        env_id: str,
        agents: int,
        span: Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> None:
        """The run's parameters: the config (``training.seed`` ...), the env id, the fleet size,
        the data span (``data.*``; the whole span is also the artifact ``data_span.json``) and
        the trainer's own ``options`` (``run.*``); the config is also ``config.yaml``."""
        params: dict[str, Any] = {**flatten(config.to_dict()), "env": env_id, "agents": agents}
        if span is not None:
            data = {k: v for k, v in span.items() if k != "symbols"}
            params |= flatten(data, "data.") | {"data.n_symbols": len(span.get("symbols", ()))}
            self.log_dict(span, "data_span.json")
        params |= {f"run.{key}": value for key, value in options.items()}
        self.log_params(params)
        self.client.log_text(self.run_id, config.to_yaml(), "config.yaml")

    def log_progress(
        self, progress: Progress, monitor: TrainingMonitor, env: Any, *, updates: int
    ) -> None:
        """One progress point at ``progress.step``: what the run record's progress line holds,
        the pieces' reports on ``env``, the process's memory and the steps per second since the
        last point (wall clock, evaluations included)."""
        now = time.perf_counter()
        last_step, last_time = self._last
        self._last = (progress.step, now)
        metrics = progress_metrics(progress, monitor) | component_metrics(env)
        metrics["train/updates"] = float(updates)
        metrics["resources/rss_megabytes"] = self._process.memory_info().rss / 2**20
        metrics["resources/steps_per_s"] = (progress.step - last_step) / max(now - last_time, 1e-9)
        if "eval_return" in metrics:
            self._eval_steps.add(progress.step)
        self.log_metrics(metrics, progress.step)

    def log_validation(self, validation: Validation, selectable: bool) -> None:
        """One validation of the checkpoint selector at its step."""
        self.log_metrics(validation_metrics(validation, selectable), validation.step)

    def finish(
        self,
        outcome: Outcome,
        step: int,
        *,
        summary: Mapping[str, Any],
        artifacts: tuple[Path, ...] = (),
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Log the outcome (tag ``outcome``), each number of ``summary`` as ``final/<key>`` at
        ``step`` (its ``eval_return`` also as ``eval_return`` unless an evaluation was logged at
        that step), the files ``artifacts``; end the run with the outcome's status."""
        numbers = {
            f"final/{key}": float(value)
            for key, value in summary.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        last_eval = summary.get("eval_return")
        if isinstance(last_eval, int | float) and step not in self._eval_steps:
            numbers["eval_return"] = float(last_eval)
        self.log_metrics(numbers, step)
        self.set_tags({"outcome": outcome, **(tags or {})})
        for path in artifacts:
            self.log_artifact(path)
        self.end(STATUS[outcome])


def _artifact_root(uri: str) -> str | None:
    """A SQLite store keeps its artifacts beside its file (MLflow's default: ``./mlruns`` of
    the working directory); other stores choose their own."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix:
        return None
    database = Path(uri.removeprefix(prefix).partition("?")[0])
    return (database.parent / ARTIFACTS_DIR).resolve().as_uri()


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."


def _one_line(error: BaseException) -> str:
    message = error.message if isinstance(error, MlflowException) else str(error)
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return " ".join(lines) or type(error).__name__
