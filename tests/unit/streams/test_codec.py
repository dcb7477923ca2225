"""The versioned wire codec: round trips, strict rejection and upcasting."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

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
    Holding,
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
from streams.codec import CODEC, Codec, CodecError, DeadLettered, decode, default_codec, encode

IDS: dict[str, Any] = {"cause_id": "cause", "run_id": "run-1", "event_time": 1_617_163_200_000}


def one_of_each() -> dict[str, Event | DeadLettered]:
    """One instance of every registered type, keyed by its stable wire name."""
    return {
        "bar_closed": BarClosed(
            event_id="e1",
            **IDS,
            symbol="SPY",
            step=3,
            steps_total=10,
            step_bars=2,
            open=390.25,
            high=392.0,
            low=389.5,
            close=391.125,
            volume=1.5e6,
        ),
        "replay_started": ReplayStarted(
            event_id="e2",
            **IDS,
            symbols=("AAPL", "SPY"),
            steps_total=10,
            dataset="bytetheory",
            mode="lockstep",
        ),
        "service_ready": ServiceReady(event_id="e3", **IDS, service="symbol-agent"),
        "step_completed": StepCompleted(event_id="e4", **IDS, step=3),
        "replay_finished": ReplayFinished(event_id="e5", **IDS, steps=10),
        "action_decided": ActionDecided(
            event_id="e6",
            **IDS,
            symbol="SPY",
            step=3,
            raw=-0.75,
            smoothed=-0.1 / 3,
            policy="momentum",
            policy_version="1",
        ),
        "portfolio_opened": PortfolioOpened(
            event_id="e7",
            **IDS,
            portfolio_id="p1",
            initial_cash=100_000.0,
            symbols=("AAPL", "SPY"),
        ),
        "decision_recorded": DecisionRecorded(
            event_id="e8",
            **IDS,
            symbol="SPY",
            step=3,
            raw=0.5,
            smoothed=0.2,
            kind="buy",
            policy="momentum",
            policy_version="1",
        ),
        "decision_missed": DecisionMissed(event_id="e8m", **IDS, symbol="SPY", step=3),
        "action_late": ActionLate(
            event_id="e8l",
            **IDS,
            symbol="SPY",
            step=3,
            raw=0.5,
            smoothed=0.2,
            policy="momentum",
            policy_version="1",
        ),
        "order_filled": OrderFilled(
            event_id="e9",
            **IDS,
            symbol="SPY",
            step=4,
            side="buy",
            quantity=38.3,
            price=391.445,
            notional=14_992.3435,
            fee=14.9923435,
            requested_quantity=120.0,
            clipped_by=("position_cap", "insufficient_cash"),
        ),
        "order_skipped": OrderSkipped(
            event_id="e10",
            **IDS,
            symbol="AAPL",
            step=4,
            side="sell",
            reason="no_position",
            requested_quantity=0.0,
        ),
        "account_marked": AccountMarked(
            event_id="e11",
            **IDS,
            step=4,
            bars=2,
            cash=85_000.0,
            equity=100_012.5,
            holdings=(
                Holding(
                    symbol="SPY",
                    quantity=38.3,
                    cost=15_007.089,
                    avg_cost=391.83,
                    close=392.5,
                    unrealized_pnl=25.661,
                ),
            ),
        ),
        "portfolio_closed": PortfolioClosed(
            event_id="e12",
            **IDS,
            steps=10,
            final_equity=101_234.56,
        ),
        "collapse_detected": CollapseDetected(
            event_id="e14",
            **IDS,
            agent="AAPL",
            metric="dominance",
            severity="warning",
            value=0.97,
            threshold=0.6,
            window="1000 actions / 30 days",
            actions=50,
        ),
        "model_published": ModelPublished(
            event_id="e16",
            **IDS,
            agent_id="fleet",
            checkpoint="/models/sac.pt",
            version="ab12cd",
            previous_checkpoint="",
            previous_version="baseline",
            reason="publish",
        ),
        "collapse_resolved": CollapseResolved(
            event_id="e15",
            **IDS,
            agent="AAPL",
            metric="dominance",
            severity="warning",
            value=0.41,
            threshold=0.6,
            window="1000 actions / 30 days",
            actions=1000,
        ),
        "dead_lettered": DeadLettered(
            event_id="e13",
            source_topic="agent.actions",
            partition=2,
            offset=17,
            key=None,
            reason="unknown event type 'x'",
            service="portfolio-manager",
            payload=b'{"type": "x"}\x00\xff',
        ),
    }


def record(name: str, version: int, data: dict[str, Any]) -> bytes:
    return json.dumps({"type": name, "v": version, "data": data}).encode()


def data_of(event: Event | DeadLettered) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encode(event))["data"]
    return body


def test_every_registered_type_round_trips() -> None:
    events = one_of_each()

    for name, event in events.items():
        assert CODEC.wire_name(type(event)) == name
        decoded = decode(encode(event))
        assert decoded == event, name
        assert type(decoded) is type(event)


def test_the_round_trip_covers_every_registered_type() -> None:
    codec = default_codec()

    assert set(codec._by_name) == set(one_of_each())


def test_record_carries_wire_name_and_version_not_module_path() -> None:
    wire = json.loads(encode(one_of_each()["step_completed"]))

    assert wire == {
        "type": "step_completed",
        "v": 1,
        "data": {"event_id": "e4", **IDS, "step": 3},
    }


def test_same_event_encodes_to_the_same_bytes() -> None:
    assert encode(one_of_each()["order_filled"]) == encode(one_of_each()["order_filled"])


def test_decode_as_checks_the_type() -> None:
    payload = CODEC.encode(one_of_each()["step_completed"])

    assert isinstance(CODEC.decode_as(payload, StepCompleted), StepCompleted)
    with pytest.raises(CodecError, match="expected BarClosed, got StepCompleted"):
        CODEC.decode_as(payload, BarClosed)


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"", b"[1, 2]", b'{"type": "step_completed", "v": 1}', b"\xff\xfe"],
)
def test_malformed_record_is_rejected(payload: bytes) -> None:
    with pytest.raises(CodecError, match="not an event envelope"):
        decode(payload)


def test_record_without_value_is_rejected() -> None:
    with pytest.raises(CodecError, match="no value"):
        decode(None)


def test_unknown_type_is_rejected() -> None:
    with pytest.raises(CodecError, match="unknown event type 'order_cancelled'"):
        decode(record("order_cancelled", 1, {}))


def test_missing_field_is_rejected() -> None:
    data = data_of(one_of_each()["order_filled"])
    del data["fee"]

    with pytest.raises(CodecError, match="invalid order_filled v1.*fee"):
        decode(record("order_filled", 1, data))


def test_wrong_field_type_is_rejected() -> None:
    data = data_of(one_of_each()["step_completed"])
    data["step"] = "three"

    with pytest.raises(CodecError, match="invalid step_completed v1"):
        decode(record("step_completed", 1, data))


def test_nan_float_is_encoded_as_null_and_rejected_on_decode() -> None:
    event = ActionDecided(
        event_id="e",
        **IDS,
        symbol="SPY",
        step=0,
        raw=float("nan"),
        smoothed=0.0,
        policy="p",
        policy_version="1",
    )

    payload = encode(event)

    assert json.loads(payload)["data"]["raw"] is None
    with pytest.raises(CodecError, match="invalid action_decided v1"):
        decode(payload)


def test_future_schema_version_is_rejected() -> None:
    data = data_of(one_of_each()["step_completed"])

    with pytest.raises(CodecError, match="schema v2 is not supported"):
        decode(record("step_completed", 2, data))


def test_version_zero_is_rejected() -> None:
    with pytest.raises(CodecError, match="schema v0 is not supported"):
        decode(record("step_completed", 0, data_of(one_of_each()["step_completed"])))


def test_unregistered_type_cannot_be_encoded() -> None:
    with pytest.raises(CodecError, match="not a registered wire type"):
        CODEC.encode(
            Holding(symbol="A", quantity=1.0, cost=1.0, avg_cost=1.0, close=1.0, unrealized_pnl=0.0)
        )


def test_type_cannot_be_registered_twice() -> None:
    codec = Codec()
    codec.register("greeting", Greeting)

    with pytest.raises(ValueError, match="registered twice"):
        codec.register("greeting_again", Greeting)
    with pytest.raises(ValueError, match="registered twice"):
        codec.register("greeting", StepCompleted)


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """A small test type; v2 split v1's ``name`` into ``first`` and ``last``, added ``times``."""

    first: str
    last: str
    times: int


def split_name(v1: dict[str, Any]) -> dict[str, Any]:
    first, last = v1.pop("name").split(" ", 1)
    return {**v1, "first": first, "last": last}


def v2_codec() -> Codec:
    codec = Codec()
    codec.register("greeting", Greeting, version=2)
    codec.register_upcaster("greeting", 1, split_name)
    return codec


def test_old_version_is_upcast_on_decode() -> None:
    codec = v2_codec()

    event = codec.decode(record("greeting", 1, {"name": "Ada Lovelace", "times": 2}))

    assert event == Greeting(first="Ada", last="Lovelace", times=2)


def test_current_version_is_written_and_read_without_upcasting() -> None:
    codec = v2_codec()
    event = Greeting(first="Alan", last="Turing", times=1)

    payload = codec.encode(event)

    assert json.loads(payload)["v"] == 2
    assert codec.decode(payload) == event


def test_upcast_record_that_is_still_invalid_is_rejected() -> None:
    with pytest.raises(CodecError, match="invalid greeting v1"):
        v2_codec().decode(record("greeting", 1, {"name": "Ada Lovelace", "times": "two"}))


def test_old_version_without_upcaster_is_rejected() -> None:
    codec = Codec()
    codec.register("greeting", Greeting, version=3)
    codec.register_upcaster("greeting", 1, split_name)

    with pytest.raises(CodecError, match="no upcaster for greeting v2"):
        codec.decode(record("greeting", 1, {"name": "Ada Lovelace", "times": 2}))
