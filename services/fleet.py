"""The trained SAC fleet the demo serves by default, shipped with its provenance.

``rl_agents/fleets/sac-fleet.pt`` is the template's fleet
(``rl_agents/sac/templates/fleet_sac.yaml``: one head per symbol of the 143,
trained on the first 70% of the bundled days, checkpoint chosen on the next
15%), and ``sac-fleet.json`` beside it says how it was made: the command, the
config and its SHA-256, the data span, the seed, the torch version and
threads, the measured training time and the weights hash (the checkpoint's
version, ``rl_agents.checkpoints.actor_hash``).

Training is deterministic for a given number of CPU threads, so
``python -m services.fleet verify`` retrains the fleet from its recorded
command and compares the weights hash with the shipped one; ``python -m
services.fleet build`` makes both files again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.bars import BarFrame, timestamp_ns_to_iso

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "rl_agents" / "fleets" / "sac-fleet.pt"
PROVENANCE = SHIPPED.with_suffix(".json")
TEMPLATE = Path("rl_agents") / "sac" / "templates" / "fleet_sac.yaml"
FLEETS = ("sac", "momentum", "mixed")
"""``--fleet`` of the demo: the shipped SAC fleet (default), the momentum baseline, or
momentum with every 10th agent collapsed on purpose."""


class FleetError(RuntimeError):
    """The fleet cannot be served or built; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetChoice:
    """What the symbol agents serve: ``TRADINGBOT_AGENT_FLEET`` and ``_POLICY``, and why."""

    fleet: str
    policy: str
    note: str


def choose(option: str, frame: BarFrame, shipped: Path = SHIPPED) -> FleetChoice:
    """The fleet for ``--fleet option`` on ``frame``'s symbols.

    The SAC fleet has one head per symbol of the data it was trained on; on other
    symbols the demo serves the momentum baseline and says so.
    """
    if option == "momentum":
        return FleetChoice(fleet="single", policy="momentum", note="the momentum baseline")
    if option == "mixed":
        return FleetChoice(
            fleet="mixed",
            policy="momentum",
            note="momentum, every 10th agent the collapsed always-BUY_SMALL policy",
        )
    if option != "sac":
        raise FleetError(f"--fleet is one of {', '.join(FLEETS)}, not {option!r}")
    if not shipped.is_file():
        raise FleetError(
            f"{shipped} is missing: build it with `python -m services.fleet build` "
            "(about 10 minutes on two cores), or run with --fleet momentum"
        )
    from rl_agents.checkpoints import CheckpointError, load_checkpoint

    try:
        checkpoint = load_checkpoint(shipped)
    except CheckpointError as e:
        raise FleetError(
            f"{shipped}: {e} (rebuild it with `python -m services.fleet build`)"
        ) from e
    trained_on = list(checkpoint.data_span.get("symbols", ()))
    if trained_on != list(frame.symbols):
        return FleetChoice(
            fleet="single",
            policy="momentum",
            note=(
                f"the momentum baseline: the shipped SAC fleet has heads for the "
                f"{len(trained_on)} symbols of {checkpoint.data_span.get('source')}, not these "
                f"{frame.n_symbols} (train one: tradingbot train --config {TEMPLATE} "
                "--dataset ... --symbols N)"
            ),
        )
    train = checkpoint.data_span.get("split", {}).get("train", [0, 0])
    return FleetChoice(
        fleet="single",
        policy=f"sac:{shipped}",
        note=(
            f"the shipped SAC fleet {checkpoint.version} ({shipped.relative_to(REPO)}, seed "
            f"{checkpoint.seed}; trained on steps {train[0]}..{train[1] - 1} of these days, "
            "see its .json)"
        ),
    )


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def command(out: Path, root: Path = REPO) -> list[str]:
    """The training command of the shipped fleet (``tradingbot train`` arguments)."""
    return ["--config", str(root / TEMPLATE), "--out", str(out)]


def train(out: Path) -> tuple[int, float]:
    """Train the template's fleet into ``out``; return the trainer's exit code and seconds."""
    from rl_agents.sac import __main__ as trainer

    began = time.perf_counter()
    code = trainer.main(command(out))
    return code, time.perf_counter() - began


def provenance(checkpoint_path: Path, seconds: float, note: str = "") -> dict[str, Any]:
    """What the shipped fleet's ``.json`` records."""
    import torch

    from rl_agents.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_path)
    span = dict(checkpoint.data_span)
    return {
        "checkpoint": str(SHIPPED.relative_to(REPO)),
        "weights_hash": checkpoint.version,
        "weights_hash_rule": "rl_agents.checkpoints.actor_hash: first 12 hex digits of the "
        "SHA-256 of the actor's state dict",
        "file_sha256": sha256(checkpoint_path),
        "command": "tradingbot train " + " ".join(command(SHIPPED.relative_to(REPO), root=Path())),
        "config_file": str(TEMPLATE),
        "config_sha256": sha256(REPO / TEMPLATE),
        "config": checkpoint.config.to_dict(),
        "seed": checkpoint.seed,
        "data_span": {
            **span,
            "symbols": len(span.get("symbols", ())),
            "first_day": timestamp_ns_to_iso(int(span["first_timestamp_ns"]))[:10],
            "last_day": timestamp_ns_to_iso(int(span["last_timestamp_ns"]))[:10],
        },
        "metrics": dict(checkpoint.metrics),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "training_seconds": round(seconds, 1),
        "training_note": note or "wall-clock seconds of the training, measured by build",
    }


def build() -> int:
    """Train the fleet and write it and its provenance into ``rl_agents/fleets/``."""
    SHIPPED.parent.mkdir(parents=True, exist_ok=True)
    code, seconds = train(SHIPPED)
    if code != 0:
        print(f"training ended with exit code {code}: nothing shipped", file=sys.stderr)
        return code
    PROVENANCE.write_text(json.dumps(provenance(SHIPPED, seconds), indent=2) + "\n")
    print(f"{SHIPPED} and {PROVENANCE} written ({seconds:.0f} s of training)")
    return 0


def verify() -> int:
    """Retrain from the recorded command; exit 0 when the weights hash is the shipped one."""
    import torch

    from rl_agents.checkpoints import load_checkpoint

    recorded = json.loads(PROVENANCE.read_text())
    if sha256(REPO / TEMPLATE) != recorded["config_sha256"]:
        print(f"{TEMPLATE} changed since the fleet was built: rebuild it", file=sys.stderr)
        return 1
    if torch.get_num_threads() != recorded["threads"]:
        print(
            f"note: {torch.get_num_threads()} threads here, {recorded['threads']} when built; "
            "the hash is only promised for the same count",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sac-fleet.pt"
        code, seconds = train(out)
        if code != 0:
            print(f"training ended with exit code {code}", file=sys.stderr)
            return code
        again = load_checkpoint(out).version
    same = again == recorded["weights_hash"]
    print(
        f"retrained in {seconds:.0f} s (built in {recorded['training_seconds']:.0f} s): weights "
        f"hash {again} {'==' if same else '!='} shipped {recorded['weights_hash']}"
    )
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    """``build`` or ``verify`` the shipped fleet."""
    parser = argparse.ArgumentParser(prog="python -m services.fleet", description=__doc__)
    parser.add_argument("what", choices=("build", "verify"))
    args = parser.parse_args(argv)
    return build() if args.what == "build" else verify()


if __name__ == "__main__":
    sys.exit(main())
