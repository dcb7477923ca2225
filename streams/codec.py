"""Versioned wire codec for every event type (msgspec JSON).

Each record is ``{"type": <stable wire name>, "v": <schema version>, "data":
{...}}``. The wire name is registered per type, never the module path; a
record of an older version is upcast, step by step, by registered functions
before it is decoded into the current type. Decoding is typed and strict:
a missing field, a wrong type, a NaN (encoded as null) or an unknown type is
a ``CodecError`` with the reason, which consumers send to the dead-letter
topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from core.events import (
    AccountMarked,
    ActionDecided,
    ActionLate,
    BarClosed,
    CollapseDetected,
    CollapseResolved,
    DecisionMissed,
    DecisionRecorded,
    Event,
    ModelPublished,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    PortfolioOpened,
    ReplayFinished,
    ReplayStarted,
    ServiceReady,
    StepCompleted,
)


class CodecError(ValueError):
    """A record that cannot be decoded, with the reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLettered:
    """A record that a consumer could not use, kept with the reason."""

    event_id: str
    source_topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    service: str
    payload: bytes


class _Envelope(msgspec.Struct, frozen=True):
    type: str
    v: int
    data: msgspec.Raw


class _OutEnvelope(msgspec.Struct, frozen=True):
    type: str
    v: int
    data: Any


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class _WireType:
    name: str
    cls: type
    version: int
    decoder: msgspec.json.Decoder[Any]


class Codec:
    """Encodes and decodes registered event types."""

    def __init__(self) -> None:
        self._by_name: dict[str, _WireType] = {}
        self._by_cls: dict[type, _WireType] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._encoder = msgspec.json.Encoder()
        self._envelope = msgspec.json.Decoder(_Envelope)

    def register(self, name: str, cls: type, version: int = 1) -> None:
        """Register ``cls`` under the stable wire ``name`` at schema ``version``."""
        if name in self._by_name or cls in self._by_cls:
            raise ValueError(f"wire type {name} / {cls.__name__} registered twice")
        wire = _WireType(name, cls, version, msgspec.json.Decoder(cls))
        self._by_name[name] = wire
        self._by_cls[cls] = wire

    def register_upcaster(self, name: str, from_version: int, upcast: Upcaster) -> None:
        """Register the function that turns version ``from_version`` of ``name`` into the next."""
        self._upcasters[(name, from_version)] = upcast

    def wire_name(self, cls: type) -> str:
        """The wire name of a registered type."""
        return self._by_cls[cls].name

    def encode(self, event: object) -> bytes:
        """Encode a registered event to bytes."""
        wire = self._by_cls.get(type(event))
        if wire is None:
            raise CodecError(f"{type(event).__name__} is not a registered wire type")
        return self._encoder.encode(_OutEnvelope(wire.name, wire.version, event))

    def decode(self, payload: bytes | None) -> object:
        """Decode bytes into the registered event type (upcasting old versions)."""
        if payload is None:
            raise CodecError("record has no value")
        try:
            envelope = self._envelope.decode(payload)
        except msgspec.DecodeError as e:
            raise CodecError(f"not an event envelope: {e}") from e
        wire = self._by_name.get(envelope.type)
        if wire is None:
            raise CodecError(f"unknown event type {envelope.type!r}")
        try:
            if envelope.v == wire.version:
                return wire.decoder.decode(envelope.data)
            if envelope.v > wire.version or envelope.v < 1:
                raise CodecError(
                    f"{envelope.type} schema v{envelope.v} is not supported "
                    f"(this build reads up to v{wire.version})"
                )
            data = msgspec.json.decode(envelope.data)
            for version in range(envelope.v, wire.version):
                upcast = self._upcasters.get((envelope.type, version))
                if upcast is None:
                    raise CodecError(f"no upcaster for {envelope.type} v{version}")
                data = upcast(data)
            return msgspec.convert(data, wire.cls)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise CodecError(f"invalid {envelope.type} v{envelope.v}: {e}") from e

    def decode_as(self, payload: bytes | None, cls: type[E]) -> E:
        """Decode and check that the event is a ``cls``."""
        event = self.decode(payload)
        if not isinstance(event, cls):
            raise CodecError(f"expected {cls.__name__}, got {type(event).__name__}")
        return event


def default_codec() -> Codec:
    """The codec with every event type of the system registered."""
    codec = Codec()
    for name, cls in (
        ("bar_closed", BarClosed),
        ("replay_started", ReplayStarted),
        ("service_ready", ServiceReady),
        ("step_completed", StepCompleted),
        ("replay_finished", ReplayFinished),
        ("action_decided", ActionDecided),
        ("portfolio_opened", PortfolioOpened),
        ("decision_recorded", DecisionRecorded),
        ("order_filled", OrderFilled),
        ("order_skipped", OrderSkipped),
        ("account_marked", AccountMarked),
        ("portfolio_closed", PortfolioClosed),
        ("dead_lettered", DeadLettered),
        ("collapse_detected", CollapseDetected),
        ("model_published", ModelPublished),
        ("collapse_resolved", CollapseResolved),
        ("decision_missed", DecisionMissed),
        ("action_late", ActionLate),
    ):
        codec.register(name, cls)
    return codec


CODEC = default_codec()
"""The process-wide codec."""


def encode(event: Event | DeadLettered) -> bytes:
    """Encode with the default codec."""
    return CODEC.encode(event)


def decode(payload: bytes | None) -> object:
    """Decode with the default codec."""
    return CODEC.decode(payload)
