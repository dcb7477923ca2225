"""Seeded hostile records for the input topics of a run, and a sender that paces them.

``HostileGenerator`` makes records that no correct consumer may use, for each
input topic (``market.bars``, ``agent.actions``, ``sim.clock``,
``agent.models``), in two families:

- *undecodable*: random bytes, empty and null values, JSON that is no event
  envelope, truncated envelopes, unknown event types and schema versions,
  fields of the wrong type or missing, NaN and infinities (JSON has no NaN:
  the codec writes ``null``, so these are raw bytes such as ``NaN``,
  ``Infinity`` or ``1e999``), oversized payloads (hundreds of KB). The codec
  refuses every one of them.
- *well-formed but impossible*, of the right type and the run's id:
  negative, zero and absurd (1e308) prices, low above high, unknown symbols,
  steps far in the future and in the past (negative), conflicting duplicates
  (a bar, action or step end of the run that was already processed, with one
  value changed; only for steps the run has completed, so they cannot race
  the genuine record), forged ids, actions outside [-1, 1], contradicting run
  starts and ends, models that cannot be served, events on a topic they do
  not belong to.

An identical copy of a genuine record is never produced: a consumer may
rightly ignore it as a redelivery (``tests/faults/test_kill.py`` checks that
such copies change nothing).

The kinds and the choices within them are drawn from the seed; which genuine
record a duplicate copies depends on how far the run is when it is made.
``HostileSender`` follows the run and sends a share of the records after each
completed step, keeping for each one where it landed (topic, partition,
offset) so that its dead letter can be found.
"""

from __future__ import annotations

import asyncio
import base64
import random
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from harness import RunProcesses, TrialFailed, consumer, partitions_of

from core.events import (
    AccountMarked,
    ActionDecided,
    BarClosed,
    Event,
    Holding,
    ModelPublished,
    PortfolioClosed,
    ReplayFinished,
    ReplayStarted,
    StepCompleted,
    event_id,
)
from streams.codec import CODEC, CodecError, DeadLettered
from streams.topics import AGENT_ACTIONS, AGENT_MODELS, MARKET_BARS, SIM_CLOCK, Topic

HOSTILE_TOPICS: tuple[Topic, ...] = (MARKET_BARS, AGENT_ACTIONS, SIM_CLOCK, AGENT_MODELS)
MODEL_ID = "fleet"
"""The agent id the symbol agents serve (``TRADINGBOT_AGENT_MODEL_ID``'s default)."""
OVERSIZED = (150_000, 600_000)
"""Bytes of an oversized payload: hundreds of KB, under the broker's 1 MB record limit."""
AHEAD = 25
"""Steps ahead of the last completed one that a forged step of the run at least lies,
so the run cannot reach it while the record is on its way."""
_RAW = "\x01raw\x01"


@dataclass(frozen=True, slots=True)
class HostileRecord:
    """One record to send: its topic, what kind of hostility, key and value bytes."""

    topic: str
    kind: str
    key: bytes | None
    value: bytes | None
    decodable: bool
    """Whether the codec reads it (the well-formed but impossible family)."""


@dataclass
class RunView:
    """What the sender has seen of the run it attacks (genuine records only)."""

    run_id: str
    junk_dir: Path
    """A directory holding a file that is not a checkpoint (for hostile models)."""
    started: ReplayStarted | None = None
    completed: int = -1
    bars: dict[tuple[int, str], BarClosed] = field(default_factory=dict)
    actions: dict[tuple[int, str], ActionDecided] = field(default_factory=dict)
    steps: dict[int, StepCompleted] = field(default_factory=dict)
    mine: set[int] = field(default_factory=set)
    """Hashes of the values this sender produced (never taken for genuine)."""
    _bars_of: dict[int, list[BarClosed]] = field(default_factory=dict)
    _actions_of: dict[int, list[ActionDecided]] = field(default_factory=dict)

    def take(self, event: object, value: bytes | None) -> None:
        """Fold one record of ``sim.clock``, ``market.bars`` or ``agent.actions``."""
        if hash(value) in self.mine or not isinstance(event, Event) or event.run_id != self.run_id:
            return
        if isinstance(event, ReplayStarted):
            if self.started is None and event.event_id == event_id(
                self.run_id, -1, "replay-started"
            ):
                self.started = event
        elif isinstance(event, StepCompleted):
            if event.step == self.completed + 1 and event.event_id == event_id(
                self.run_id, event.step, "completed"
            ):
                self.completed = event.step
                self.steps[event.step] = event
        elif isinstance(event, BarClosed):
            if event.event_id == event_id(self.run_id, event.step, "bar", event.symbol):
                if self.bars.setdefault((event.step, event.symbol), event) is event:
                    self._bars_of.setdefault(event.step, []).append(event)
        elif isinstance(event, ActionDecided):
            if event.event_id == event_id(self.run_id, event.step, "action", event.symbol):
                if self.actions.setdefault((event.step, event.symbol), event) is event:
                    self._actions_of.setdefault(event.step, []).append(event)

    def done_bar(self, rng: random.Random) -> BarClosed | None:
        """A genuine bar of a completed step (None: none yet)."""
        steps = [s for s in range(self.completed + 1) if s in self._bars_of]
        return rng.choice(self._bars_of[rng.choice(steps)]) if steps else None

    def done_action(self, rng: random.Random) -> ActionDecided | None:
        """A genuine action of a completed step (None: none yet)."""
        steps = [s for s in range(self.completed + 1) if s in self._actions_of]
        return rng.choice(self._actions_of[rng.choice(steps)]) if steps else None

    def genuine(self, event: object) -> object | None:
        """The genuine record with the same id as ``event``, if the sender has seen one."""
        if isinstance(event, BarClosed):
            return self.bars.get((event.step, event.symbol))
        if isinstance(event, ActionDecided):
            return self.actions.get((event.step, event.symbol))
        if isinstance(event, StepCompleted):
            return self.steps.get(event.step)
        if isinstance(event, ReplayStarted):
            return self.started
        return None


Made = tuple[bytes | None, bytes | None]
"""The key and value of a hostile record."""
Maker = Callable[[str], Made | None]
"""Makes a record for a topic (None: not possible yet, e.g. no completed step to copy)."""


class HostileGenerator:
    """Draws hostile records for a run from a seed (see the module docstring)."""

    def __init__(self, seed: int, view: RunView) -> None:
        self.rng = random.Random(seed)
        self.view = view
        self.count = 0
        (view.junk_dir / "not-a-checkpoint.pt").write_bytes(self.rng.randbytes(4096))
        common: dict[str, tuple[float, Maker]] = {
            "random-bytes": (6, self._random_bytes),
            "empty-value": (1, lambda t: (self._key(t), b"")),
            "null-value": (1, self._null_value),
            "not-an-envelope": (3, self._not_an_envelope),
            "truncated": (3, self._truncated),
            "unknown-type": (3, self._unknown_type),
            "unknown-version": (3, self._unknown_version),
            "wrong-field-type": (5, self._wrong_field_type),
            "missing-field": (2, self._missing_field),
            "oversized-bytes": (0.25, self._oversized_bytes),
            "oversized-event": (0.25, self._oversized_event),
            "misplaced-event": (3, self._misplaced_event),
        }
        numbers: dict[str, tuple[float, Maker]] = {"nan-or-infinity": (5, self._nan_or_infinity)}
        self.kinds: dict[str, dict[str, tuple[float, Maker]]] = {
            MARKET_BARS.name: {
                **common,
                **numbers,
                "negative-price": (3, self._bar_negative_price),
                "zero-price": (1, self._bar_zero_price),
                "absurd-price": (3, self._bar_absurd_price),
                "low-above-high": (3, self._bar_low_above_high),
                "open-outside-range": (2, self._bar_open_outside),
                "bad-volume": (2, self._bar_bad_volume),
                "unknown-symbol": (3, self._unknown_symbol),
                "future-step": (3, self._future_step),
                "past-step": (3, self._past_step),
                "conflicting-duplicate": (6, self._bar_conflict),
                "inconsistent-step": (2, self._bar_inconsistent_step),
                "forged-id": (2, self._forged_id),
            },
            AGENT_ACTIONS.name: {
                **common,
                **numbers,
                "action-out-of-range": (5, self._action_out_of_range),
                "unknown-symbol": (3, self._unknown_symbol),
                "future-step": (3, self._future_step),
                "unopened-step": (2, self._action_unopened_step),
                "past-step": (3, self._past_step),
                "conflicting-duplicate": (6, self._action_conflict),
                "forged-id": (2, self._forged_id),
            },
            SIM_CLOCK.name: {
                **common,
                "future-step": (4, self._clock_future_step),
                "past-step": (3, self._clock_past_step),
                "conflicting-duplicate": (3, self._clock_conflict),
                "forged-id": (2, self._clock_forged_id),
                "conflicting-start": (3, self._clock_conflicting_start),
                "forged-start": (2, self._clock_forged_start),
                "forged-finish": (3, self._clock_forged_finish),
            },
            AGENT_MODELS.name: {
                # No null value: on a compacted topic it is Kafka's own delete marker.
                **{k: v for k, v in common.items() if k != "null-value"},
                "missing-checkpoint": (5, self._model_missing),
                "not-a-checkpoint": (4, self._model_not_a_checkpoint),
                "directory-checkpoint": (2, self._model_directory),
            },
        }

    def record(self, topic: str) -> HostileRecord:
        """One hostile record for ``topic``."""
        kinds = self.kinds[topic]
        names = list(kinds)
        weights = [kinds[n][0] for n in names]
        for _ in range(1000):
            kind = self.rng.choices(names, weights)[0]
            made = kinds[kind][1](topic)
            if made is None:
                continue  # not possible yet (no completed step to copy)
            key, value = made
            if len(value or b"") > OVERSIZED[1] + 64_000:
                raise ValueError(f"{kind} made {len(value or b'')} bytes, over the record limit")
            decodable = self._decodable(value)
            if decodable is None:
                continue  # an identical copy of a genuine record: not hostile
            self.count += 1
            if value is not None:
                self.view.mine.add(hash(value))
            return HostileRecord(topic, kind, key, value, decodable)
        raise RuntimeError(f"no hostile record for {topic} could be made")

    def _decodable(self, value: bytes | None) -> bool | None:
        """Whether the codec reads ``value``; None when it equals a genuine record."""
        try:
            event = CODEC.decode(value)
        except CodecError:
            return False
        if event == self.view.genuine(event):
            return None
        return True

    # ------------------------------------------------------------ building blocks

    def _key(self, topic: str) -> bytes:
        """A key that puts the record among the run's (a symbol's partition, or the run id)."""
        view = self.view
        if topic == AGENT_MODELS.name:
            # Unique keys: compaction must not drop a hostile record before it is read.
            return f"hostile-{self.count}".encode()
        if topic == SIM_CLOCK.name:
            return view.run_id.encode()
        symbols = view.started.symbols if view.started else ("A",)
        return self.rng.choice(symbols).encode()

    def _text(self, low: int, high: int) -> str:
        """Printable text of ``low`` to ``high`` characters (letters, digits, ``/-_.+``)."""
        size = self.rng.randint(low, high)
        if size > 1000:
            return base64.b64encode(self.rng.randbytes(size)).decode()[:size]
        alphabet = string.ascii_letters + string.digits + "/-_."
        return "".join(self.rng.choices(alphabet, k=size))

    def _symbol_outside(self) -> str:
        symbols = set(self.view.started.symbols if self.view.started else ())
        while True:
            symbol = "".join(self.rng.choices(string.ascii_uppercase, k=self.rng.randint(5, 9)))
            if symbol not in symbols:
                return symbol

    @staticmethod
    def _envelope(wire: str, version: int, data: Any) -> bytes:
        """An envelope; string values equal to ``_RAW + text`` are written as raw ``text``."""
        encoded = msgspec.json.encode({"type": wire, "v": version, "data": data})
        while True:
            start = encoded.find(b'"\\u0001raw\\u0001')
            if start < 0:
                return encoded
            end = encoded.index(b'"', start + 1)
            raw = encoded[start + len(b'"\\u0001raw\\u0001') : end]
            encoded = encoded[:start] + raw + encoded[end + 1 :]

    @staticmethod
    def _parts(event: object) -> tuple[str, int, dict[str, Any]]:
        """The wire name, version and data of an event, as the codec writes them."""
        envelope = msgspec.json.decode(CODEC.encode(event))
        return envelope["type"], envelope["v"], envelope["data"]

    def _encode(self, event: object) -> bytes:
        return CODEC.encode(event)

    def _template(self, topic: str) -> object | None:
        """A genuine-looking event of the topic's type (a copy of one of the run's)."""
        view = self.view
        if topic == MARKET_BARS.name:
            return view.done_bar(self.rng)
        if topic == AGENT_ACTIONS.name:
            return view.done_action(self.rng)
        if topic == SIM_CLOCK.name:
            if not view.steps:
                return None
            if view.started is not None and self.rng.random() < 0.3:
                return view.started
            return view.steps[self.rng.choice(list(view.steps))]
        return self._model(checkpoint=f"/nonexistent/{self._text(4, 12)}.pt")

    def _model(self, *, checkpoint: str, version: str | None = None) -> ModelPublished:
        return ModelPublished(
            event_id=f"models/{MODEL_ID}/hostile/{self.count}",
            cause_id="hostile",
            run_id="",
            event_time=1_700_000_000_000_000_000 + self.count,
            agent_id=MODEL_ID,
            checkpoint=checkpoint,
            version=version or f"hostile-{self.count}",
            previous_checkpoint="",
            previous_version="baseline",
            reason="publish",
        )

    # ------------------------------------------------------------ undecodable

    def _random_bytes(self, topic: str) -> Made:
        size = self.rng.choice((1, 2, 8, 64, 512, 2048))
        return self._key(topic), self.rng.randbytes(self.rng.randint(1, size))

    def _null_value(self, topic: str) -> Made:
        return self._key(topic), None

    def _not_an_envelope(self, topic: str) -> Made:
        shapes: list[object] = [
            [1, 2, 3],
            {"a": 1},
            "bar_closed",
            None,
            12.5,
            {"type": 1, "v": "one", "data": {}},
            {"type": "bar_closed", "data": {}},
            {"type": "bar_closed", "v": 1},
            {"v": 1, "data": {}},
            {"type": None, "v": None, "data": None},
        ]
        return self._key(topic), msgspec.json.encode(self.rng.choice(shapes))

    def _truncated(self, topic: str) -> Made | None:
        template = self._template(topic)
        if template is None:
            return None
        encoded = self._encode(template)
        return self._key(topic), encoded[: self.rng.randint(1, len(encoded) - 1)]

    def _unknown_type(self, topic: str) -> Made | None:
        template = self._template(topic)
        if template is None:
            return None
        wire, version, data = self._parts(template)
        name = self.rng.choice(
            (f"{wire}_v2", wire.upper(), f"{wire} ", "BarClosed", "core.events.BarClosed")
        )
        if self.rng.random() < 0.5:
            name = self._text(1, 30)
        return self._key(topic), self._envelope(name, version, data)

    def _unknown_version(self, topic: str) -> Made | None:
        template = self._template(topic)
        if template is None:
            return None
        wire, version, data = self._parts(template)
        v = self.rng.choice((0, -1, -(2**31), version + 1, version + self.rng.randint(2, 999)))
        return self._key(topic), self._envelope(wire, v, data)

    def _wrong_field_type(self, topic: str) -> Made | None:
        template = self._template(topic)
        if template is None:
            return None
        wire, version, data = self._parts(template)
        name = self.rng.choice(list(data))
        value = data[name]
        if isinstance(value, str):
            wrong: list[object] = [123, 1.5, [value], {"s": value}, True, None]
        elif isinstance(value, bool):
            wrong = ["true", 1.5, [value], None]
        elif isinstance(value, int):
            wrong = [str(value), float(value) + 0.5, float(value), [value], {}, True, None]
        elif isinstance(value, float):
            wrong = [str(value), [value], {"x": value}, True, None, "NaN"]
        elif isinstance(value, list):
            wrong = ["".join(map(str, value)), 5, {"0": value}, None, [*value, 7]]
        else:
            wrong = [1, "x", None]
        data = {**data, name: self.rng.choice(wrong)}
        return self._key(topic), self._envelope(wire, version, data)

    def _missing_field(self, topic: str) -> Made | None:
        template = self._template(topic)
        if template is None:
            return None
        wire, version, data = self._parts(template)
        name = self.rng.choice(list(data))
        return self._key(topic), self._envelope(
            wire, version, {k: v for k, v in data.items() if k != name}
        )

    def _nan_or_infinity(self, topic: str) -> Made | None:
        template = self._template(topic)
        if template is None:
            return None
        wire, version, data = self._parts(template)
        floats = [k for k, v in data.items() if isinstance(v, float)]
        token = self.rng.choice(
            ("NaN", "-NaN", "nan", "Infinity", "-Infinity", "inf", "1e999", "-1e999", "null")
        )
        for name in self.rng.sample(floats, self.rng.randint(1, len(floats))):
            data[name] = _RAW + token
        return self._key(topic), self._envelope(wire, version, data)

    def _oversized_bytes(self, topic: str) -> Made:
        size = self.rng.randint(*OVERSIZED)
        if self.rng.random() < 0.5:
            return self._key(topic), self.rng.randbytes(size)
        # Valid JSON, one huge string: a decoder must not choke on it.
        return self._key(topic), msgspec.json.encode({"type": "x" * size, "v": 1, "data": {}})

    def _oversized_event(self, topic: str) -> Made | None:
        """A well-formed event of the topic's type with a huge text field."""
        size = self.rng.randint(*OVERSIZED)
        huge = self._text(size, size)
        template = self._template(topic)
        if isinstance(template, BarClosed):
            return self._key(topic), self._encode(replace(template, symbol=huge))
        if isinstance(template, ActionDecided):
            field_name = self.rng.choice(("symbol", "policy", "policy_version"))
            changes: dict[str, Any] = {field_name: huge}
            return self._key(topic), self._encode(replace(template, **changes))
        if isinstance(template, StepCompleted | ReplayStarted):
            return self._key(topic), self._encode(replace(template, cause_id=huge))
        if isinstance(template, ModelPublished):
            return self._key(topic), self._encode(
                self._model(checkpoint=f"/nonexistent/{huge}", version=huge[:1000])
            )
        return None

    # ------------------------------------------------------------ well-formed, impossible

    def _misplaced_event(self, topic: str) -> Made | None:
        """An event of the run on a topic its type does not belong to."""
        view = self.view
        if view.started is None or view.completed < 0:
            return None
        run, step = view.run_id, view.completed
        bar = view.done_bar(self.rng)
        action = view.done_action(self.rng)
        others: list[object] = [
            PortfolioClosed(
                event_id=event_id(run, step, "closed"),
                cause_id=event_id(run, step, "completed"),
                run_id=run,
                event_time=view.started.event_time,
                steps=step + 1,
                final_equity=1e9,
            ),
            AccountMarked(
                event_id=event_id(run, step, "marked"),
                cause_id="hostile",
                run_id=run,
                event_time=view.started.event_time,
                step=step,
                bars=1,
                cash=1e9,
                equity=1e9,
                holdings=(
                    Holding(
                        symbol=view.started.symbols[0],
                        quantity=1e6,
                        cost=1.0,
                        avg_cost=1e-6,
                        close=1.0,
                        unrealized_pnl=0.0,
                    ),
                ),
            ),
        ]
        if topic != MARKET_BARS.name and bar is not None:
            others.append(
                replace(bar, close=bar.close * 1.01, high=max(bar.high, bar.close * 1.01))
            )
        if topic != AGENT_ACTIONS.name and action is not None:
            others.append(replace(action, raw=-action.raw or 0.5, smoothed=-action.smoothed or 0.5))
        if topic != SIM_CLOCK.name:
            others.append(
                StepCompleted(
                    event_id=event_id(run, step + 10**6, "completed"),
                    cause_id="hostile",
                    run_id=run,
                    event_time=view.started.event_time,
                    step=step + 10**6,
                )
            )
        if topic != AGENT_MODELS.name:
            others.append(self._model(checkpoint=f"/nonexistent/{self._text(4, 12)}.pt"))
        return self._key(topic), self._encode(self.rng.choice(others))

    def _bar(self) -> BarClosed | None:
        return self.view.done_bar(self.rng)

    def _bar_negative_price(self, topic: str) -> Made | None:
        bar = self._bar()
        if bar is None:
            return None
        names = self.rng.sample(("open", "high", "low", "close"), self.rng.randint(1, 4))
        changes: dict[str, Any] = {n: -abs(getattr(bar, n)) - self.rng.random() for n in names}
        return self._key(topic), self._encode(replace(bar, **changes))

    def _bar_zero_price(self, topic: str) -> Made | None:
        bar = self._bar()
        if bar is None:
            return None
        return self._key(topic), self._encode(replace(bar, low=0.0, open=0.0))

    def _bar_absurd_price(self, topic: str) -> Made | None:
        bar = self._bar()
        if bar is None:
            return None
        absurd = self.rng.choice((1e308, 1.7976931348623157e308, 1e300, 1e200))
        changes: dict[str, Any]
        if self.rng.random() < 0.5:
            changes = {"high": absurd}  # still low <= open, close <= high
        else:
            changes = {"open": absurd, "high": absurd, "low": absurd, "close": absurd}
        return self._key(topic), self._encode(replace(bar, **changes))

    def _bar_low_above_high(self, topic: str) -> Made | None:
        bar = self._bar()
        if bar is None:
            return None
        high = bar.high if bar.high > bar.low else bar.low + 1.0
        return self._key(topic), self._encode(replace(bar, low=high * 1.5, high=bar.low))

    def _bar_open_outside(self, topic: str) -> Made | None:
        bar = self._bar()
        if bar is None:
            return None
        outside = bar.high * 1.5 + 1.0 if self.rng.random() < 0.5 else bar.low * 0.5
        name = self.rng.choice(("open", "close"))
        changes: dict[str, Any] = {name: outside}
        return self._key(topic), self._encode(replace(bar, **changes))

    def _bar_bad_volume(self, topic: str) -> Made | None:
        bar = self._bar()
        if bar is None:
            return None
        volume = self.rng.choice((-1.0, -bar.volume - 1.0, 1e308, -1e308))
        return self._key(topic), self._encode(replace(bar, volume=volume))

    def _bar_inconsistent_step(self, topic: str) -> Made | None:
        bar = self._bar()
        if bar is None or self.view.started is None:
            return None
        n = len(self.view.started.symbols)
        if self.rng.random() < 0.5:
            changes: dict[str, Any] = {
                "steps_total": self.rng.choice((0, -1, bar.steps_total + 1, 10**9))
            }
        else:
            changes = {"step_bars": self.rng.choice((0, -1, n + 1, 10**9))}
        return self._key(topic), self._encode(replace(bar, **changes))

    def _bar_conflict(self, topic: str) -> Made | None:
        """A completed step's bar again, with one value changed (still a plausible bar)."""
        bar = self._bar()
        if bar is None:
            return None
        choice = self.rng.randrange(5)
        if choice == 0:
            close = bar.low + (bar.high - bar.low) * self.rng.random()
            changed = replace(bar, close=close if close != bar.close else bar.high)
        elif choice == 1:
            changed = replace(bar, volume=bar.volume + self.rng.randint(1, 10**6))
        elif choice == 2:
            factor = 1.0 + self.rng.choice((1e-9, 0.01, 0.5, 3.0))
            changed = replace(
                bar,
                open=bar.open * factor,
                high=bar.high * factor,
                low=bar.low * factor,
                close=bar.close * factor,
            )
        elif choice == 3:
            changed = replace(bar, event_time=bar.event_time + self.rng.randint(1, 10**12))
        else:
            changed = replace(bar, cause_id=f"{bar.cause_id}/forged")
        return self._key_of(bar.symbol), self._encode(changed)

    def _key_of(self, symbol: str) -> bytes:
        return symbol.encode()

    def _action(self) -> ActionDecided | None:
        return self.view.done_action(self.rng)

    def _action_out_of_range(self, topic: str) -> Made | None:
        action = self._action()
        if action is None:
            return None
        value = self.rng.choice((1.5, -1.5, 2.0, -2.0, 1.0000001, 1e308, -1e308, 1e9))
        name = self.rng.choice(("raw", "smoothed", "both"))
        changes: dict[str, Any] = (
            {"raw": value, "smoothed": value} if name == "both" else {name: value}
        )
        return self._key_of(action.symbol), self._encode(replace(action, **changes))

    def _action_conflict(self, topic: str) -> Made | None:
        """A completed step's action again, with another value in [-1, 1] or another policy."""
        action = self._action()
        if action is None:
            return None
        choice = self.rng.randrange(4)
        if choice == 0:
            raw = self.rng.uniform(-1.0, 1.0)
            changed = replace(action, raw=raw if raw != action.raw else -0.99)
        elif choice == 1:
            smoothed = self.rng.choice((-1.0, 1.0, 0.0, self.rng.uniform(-1, 1)))
            changed = replace(action, smoothed=smoothed if smoothed != action.smoothed else 0.5)
        elif choice == 2:
            changed = replace(action, policy_version=f"{action.policy_version}-forged")
        else:
            changed = replace(action, event_time=action.event_time + 1)
        return self._key_of(action.symbol), self._encode(changed)

    def _action_unopened_step(self, topic: str) -> Made | None:
        """An action for a step of the run far ahead of the one being decided."""
        action, view = self._action(), self.view
        if action is None or view.started is None:
            return None
        low, high = view.completed + AHEAD, view.started.steps_total - 1
        if low > high:
            return None
        step = self.rng.randint(low, high)
        forged = replace(
            action,
            step=step,
            event_id=event_id(view.run_id, step, "action", action.symbol),
            cause_id=event_id(view.run_id, step, "bar", action.symbol),
        )
        return self._key_of(action.symbol), self._encode(forged)

    def _forged_id(self, topic: str) -> Made | None:
        template = self._template(topic)
        if not isinstance(template, BarClosed | ActionDecided):
            return None
        forged = self.rng.choice(
            (
                f"{template.event_id}/x",
                template.event_id.upper(),
                f"other-run/{template.step}/bar/{template.symbol}",
                "",
                self._text(1, 80),
            )
        )
        return self._key_of(template.symbol), self._encode(replace(template, event_id=forged))

    def _moved(self, template: BarClosed | ActionDecided, step: int, symbol: str) -> bytes:
        kind = "bar" if isinstance(template, BarClosed) else "action"
        return self._encode(
            replace(
                template,
                step=step,
                symbol=symbol,
                event_id=event_id(self.view.run_id, step, kind, symbol),
            )
        )

    def _unknown_symbol(self, topic: str) -> Made | None:
        template = self._template(topic)
        if not isinstance(template, BarClosed | ActionDecided):
            return None
        symbol = self._symbol_outside()
        return self._key(topic), self._moved(template, template.step, symbol)

    def _future_step(self, topic: str) -> Made | None:
        template = self._template(topic)
        if not isinstance(template, BarClosed | ActionDecided) or self.view.started is None:
            return None
        total = self.view.started.steps_total
        step = self.rng.choice(
            (total, total + 1, total + self.rng.randint(2, 1000), 10**9, 2**62, 10**30)
        )
        return self._key_of(template.symbol), self._moved(template, step, template.symbol)

    def _past_step(self, topic: str) -> Made | None:
        template = self._template(topic)
        if not isinstance(template, BarClosed | ActionDecided):
            return None
        step = self.rng.choice((-1, -2, -self.rng.randint(3, 1000), -(2**62), -(10**30)))
        return self._key_of(template.symbol), self._moved(template, step, template.symbol)

    # ------------------------------------------------------------ sim.clock

    def _step_end(self) -> StepCompleted | None:
        view = self.view
        return view.steps[self.rng.choice(list(view.steps))] if view.steps else None

    def _clock_future_step(self, topic: str) -> Made | None:
        end, view = self._step_end(), self.view
        if end is None or view.started is None:
            return None
        total = view.started.steps_total
        choices = [total, total + self.rng.randint(1, 1000), 10**9, 10**30]
        if view.completed + AHEAD < total:
            choices.append(self.rng.randint(view.completed + AHEAD, total - 1))
        step = self.rng.choice(choices)
        forged = replace(end, step=step, event_id=event_id(view.run_id, step, "completed"))
        return self._key(topic), self._encode(forged)

    def _clock_past_step(self, topic: str) -> Made | None:
        end = self._step_end()
        if end is None:
            return None
        step = self.rng.choice((-1, -2, -self.rng.randint(3, 1000), -(10**30)))
        forged = replace(end, step=step, event_id=event_id(self.view.run_id, step, "completed"))
        return self._key(topic), self._encode(forged)

    def _clock_conflict(self, topic: str) -> Made | None:
        end = self._step_end()
        if end is None:
            return None
        if self.rng.random() < 0.5:
            changed = replace(end, event_time=end.event_time + self.rng.randint(1, 10**9))
        else:
            changed = replace(end, cause_id=f"{end.cause_id}/forged")
        return self._key(topic), self._encode(changed)

    def _clock_forged_id(self, topic: str) -> Made | None:
        end = self._step_end()
        if end is None:
            return None
        forged = self.rng.choice(
            (f"{end.event_id}/x", f"{self.view.run_id}/{end.step + 1}/completed", "")
        )
        return self._key(topic), self._encode(replace(end, event_id=forged))

    def _clock_conflicting_start(self, topic: str) -> Made | None:
        started = self.view.started
        if started is None:
            return None
        choice = self.rng.randrange(4)
        if choice == 0:
            changed = replace(started, symbols=(*started.symbols, self._symbol_outside()))
        elif choice == 1:
            changed = replace(started, symbols=started.symbols[1:] or ("ZZZZZ",))
        elif choice == 2:
            changed = replace(started, steps_total=started.steps_total + self.rng.randint(1, 99))
        else:
            changed = replace(started, event_time=started.event_time - 1)
        return self._key(topic), self._encode(changed)

    def _clock_forged_start(self, topic: str) -> Made | None:
        started = self.view.started
        if started is None:
            return None
        forged = self.rng.choice((f"{started.event_id}/x", f"{self.view.run_id}/0/replay-started"))
        return self._key(topic), self._encode(replace(started, event_id=forged))

    def _clock_forged_finish(self, topic: str) -> Made | None:
        view = self.view
        if view.started is None or view.completed < 0:
            return None
        total = view.started.steps_total
        steps = self.rng.choice((view.completed + 1, 0, -1, total + 1, 10**9))
        finished = ReplayFinished(
            event_id=event_id(view.run_id, steps, "replay-finished"),
            cause_id=event_id(view.run_id, steps - 1, "completed"),
            run_id=view.run_id,
            event_time=view.started.event_time,
            steps=steps,
        )
        return self._key(topic), self._encode(finished)

    # ------------------------------------------------------------ agent.models

    def _model_missing(self, topic: str) -> Made:
        path = self.rng.choice(
            (f"/nonexistent/{self._text(4, 20)}.pt", "", "~", "sac:", "\x00", "../" * 40)
        )
        if path == "":
            path = f"/nonexistent/{self.count}.pt"  # an empty checkpoint is the baseline: valid
        return self._key(topic), self._encode(self._model(checkpoint=path))

    def _model_not_a_checkpoint(self, topic: str) -> Made:
        path = self.view.junk_dir / "not-a-checkpoint.pt"
        return self._key(topic), self._encode(self._model(checkpoint=str(path)))

    def _model_directory(self, topic: str) -> Made:
        return self._key(topic), self._encode(self._model(checkpoint=str(self.view.junk_dir)))


# --------------------------------------------------------------------- sending


@dataclass(frozen=True, slots=True)
class Sent:
    """A hostile record and where the broker put it."""

    record: HostileRecord
    partition: int
    offset: int


class HostileSender:
    """Follows a run and sends ``per_topic`` hostile records to each input topic.

    The records go out after the steps ``first`` to ``last`` complete, a
    share after each, so the run goes on between them and every service reads
    them while it runs. Use as ``async with`` around the run (it starts
    following the topics on entry, before the services start).
    """

    def __init__(
        self,
        bootstrap: str,
        run_id: str,
        seed: int,
        junk_dir: Path,
        *,
        per_topic: int,
        first: int,
        last: int,
    ) -> None:
        self.bootstrap = bootstrap
        self.view = RunView(run_id, junk_dir)
        self.generator = HostileGenerator(seed, self.view)
        self.per_topic = per_topic
        self.first = first
        self.last = last
        self.sent: list[Sent] = []
        self.finished_at_step: int | None = None
        """The run's last completed step when the last record was acknowledged."""
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    @property
    def total(self) -> int:
        """How many records this sender sends in all."""
        return self.per_topic * len(HOSTILE_TOPICS)

    @property
    def done(self) -> bool:
        """Whether every record was sent and acknowledged."""
        return len(self.sent) >= self.total

    async def __aenter__(self) -> HostileSender:
        self._consumer = consumer(self.bootstrap, "fault-hostile-follow")
        await self._consumer.start()
        topics = (SIM_CLOCK.name, MARKET_BARS.name, AGENT_ACTIONS.name)
        partitions = [tp for t in topics for tp in await partitions_of(self._consumer, t)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="fault-hostile",
            acks="all",
            linger_ms=5,
            max_request_size=2 * 1024 * 1024,
            request_timeout_ms=60_000,
        )
        await self._producer.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()

    def summary(self, last: int = 8) -> str:
        """How many records were sent, by topic, and the last few (for failure messages)."""
        by_topic = Counter(s.record.topic for s in self.sent)
        lines = [
            f"hostile records sent: {len(self.sent)} of {self.total} ("
            + ", ".join(f"{t} {n}" for t, n in sorted(by_topic.items()))
            + f"); run at step {self.view.completed}; the last ones sent:"
        ]
        lines += [
            f"  {s.record.topic}[{s.partition}]@{s.offset} {s.record.kind}: "
            + ("null" if s.record.value is None else repr(s.record.value[:200]))
            for s in self.sent[-last:]
        ]
        return "\n".join(lines)

    async def pump(self) -> None:
        """Read what the run did, then send the records now due."""
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=20)
        for records in batches.values():
            for record in records:
                try:
                    event = CODEC.decode(record.value)
                except CodecError:
                    continue
                self.view.take(event, record.value)
        if self.done or self.view.started is None or self.view.completed < self.first:
            return
        span = max(1, self.last - self.first + 1)
        share = min(1.0, (self.view.completed - self.first + 1) / span)
        due = min(self.total, max(len(self.sent) + 1, int(self.total * share)))
        await self._send(due - len(self.sent))

    async def _send(self, count: int) -> None:
        assert self._producer is not None
        sent_per_topic = Counter(s.record.topic for s in self.sent)
        order = [t.name for t in HOSTILE_TOPICS]
        batch: list[HostileRecord] = []
        while len(batch) < count:
            topic = min(order, key=lambda t: sent_per_topic[t])
            if sent_per_topic[topic] >= self.per_topic:
                break
            sent_per_topic[topic] += 1
            batch.append(self.generator.record(topic))
        for chunk in range(0, len(batch), 200):
            records = batch[chunk : chunk + 200]
            futures = [await self._producer.send(r.topic, r.value, key=r.key) for r in records]
            for record, metadata in zip(records, await asyncio.gather(*futures), strict=True):
                self.sent.append(Sent(record, metadata.partition, metadata.offset))
        if self.done:
            self.finished_at_step = self.view.completed


async def dead_letters(bootstrap: str) -> dict[tuple[str, int, int], list[DeadLettered]]:
    """Every dead letter of the input topics, by its source record's topic, partition, offset."""
    client = consumer(bootstrap, "fault-dlq")
    await client.start()
    found: dict[tuple[str, int, int], list[DeadLettered]] = {}
    try:
        partitions = [
            tp for t in HOSTILE_TOPICS for tp in await partitions_of(client, f"{t.name}.dlq")
        ]
        client.assign(partitions)
        await client.seek_to_beginning(*partitions)
        end = await client.end_offsets(partitions)
        deadline = time.monotonic() + 120
        while any([await client.position(tp) < offset for tp, offset in end.items()]):
            if time.monotonic() > deadline:
                raise TrialFailed("could not read the dead-letter topics to their end in 120s")
            for records in (await client.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        letter = CODEC.decode(record.value)
                    except CodecError:
                        continue
                    if isinstance(letter, DeadLettered):
                        source = (letter.source_topic, letter.partition, letter.offset)
                        found.setdefault(source, []).append(letter)
        return found
    finally:
        await client.stop()


def undelivered(
    sent: list[Sent], letters: dict[tuple[str, int, int], list[DeadLettered]]
) -> list[Sent]:
    """The hostile records without a dead letter that gives a reason."""
    return [
        s
        for s in sent
        if not any(
            letter.reason.strip()
            for letter in letters.get((s.record.topic, s.partition, s.offset), [])
        )
    ]


def describe_undelivered(missing: list[Sent], total: int, sample: int = 12) -> str:
    """How many hostile records have no dead letter, by topic and kind, and a few of them."""
    counts = Counter((s.record.topic, s.record.kind) for s in missing)
    lines = [
        f"{len(missing)} of {total} hostile records are in no dead-letter topic with a reason:"
    ]
    lines += [f"  {topic} {kind}: {n}" for (topic, kind), n in sorted(counts.items())]
    lines.append("for example:")
    seen: set[tuple[str, str]] = set()
    for s in missing:
        if (s.record.topic, s.record.kind) in seen:
            continue
        seen.add((s.record.topic, s.record.kind))
        value = s.record.value
        shown = (
            "null" if value is None else repr(value[:160]) + (" ..." if len(value) > 160 else "")
        )
        lines.append(f"  {s.record.topic}[{s.partition}]@{s.offset} {s.record.kind}: {shown}")
        if len(seen) >= sample:
            break
    return "\n".join(lines)


async def attack(
    run: RunProcesses, sender: HostileSender, *, freeze: str | None = None, freeze_s: float = 0.0
) -> None:
    """Start the run's services and send the hostile records while it runs.

    With ``freeze``, that service is frozen (SIGSTOP) for ``freeze_s`` once a third of the
    records are sent, while the sending goes on.
    """
    run.reporters.append(sender.summary)
    run.start()
    frozen = freeze is None
    while not sender.done:
        run.check()
        if run.clock.finished or run.closed:
            break  # too late to send: the test says so
        await run.poll(timeout_ms=10)
        await sender.pump()
        if not frozen and freeze is not None and 3 * len(sender.sent) >= sender.total:
            frozen = True
            await run.freeze(freeze, freeze_s, meanwhile=sender.pump)
        if time.monotonic() > run.deadline:
            run.fail(
                f"timed out sending hostile records ({len(sender.sent)} of {sender.total} sent)"
            )
