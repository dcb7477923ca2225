"""The collapse detector's rules over ledger records, with plain dicts for its faust tables."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from core.events import (
    CollapseDetected,
    DecisionRecorded,
    OrderFilled,
    OrderSkipped,
    PortfolioClosed,
    event_id,
)
from streams.codec import CODEC
from streams.collapse_detector.app import (
    Detector,
    Refused,
    check_web_port,
    serve_metrics,
    unpack,
)
from streams.collapse_detector.config import DetectorConfig
from streams.collapse_detector.ledger import (
    batches,
    encode_batch,
    ledger_problem,
    partition_of,
    watched,
)
from streams.collapse_detector.metrics import DetectorMetrics

RUN = "unit-run"
DAY = 86_400 * 1_000_000_000


def decision(
    step: int, raw: float = 0.25, kind: str = "buy", symbol: str = "AAA", run: str = RUN
) -> DecisionRecorded:
    return DecisionRecorded(
        event_id=event_id(run, step, "decision", symbol),
        cause_id=event_id(run, step, "action", symbol),
        run_id=run,
        event_time=1_700_000_000 * 10**9 + step * DAY,
        symbol=symbol,
        step=step,
        raw=raw,
        smoothed=raw,
        kind=kind,
        policy="unit",
        policy_version="1",
    )


def filled(decided_at: int, symbol: str = "AAA") -> OrderFilled:
    step = decided_at + 1
    return OrderFilled(
        event_id=event_id(RUN, step, "fill", symbol),
        cause_id=event_id(RUN, decided_at, "decision", symbol),
        run_id=RUN,
        event_time=1_700_000_000 * 10**9 + step * DAY,
        symbol=symbol,
        step=step,
        side="buy",
        quantity=1.0,
        price=10.0,
        notional=10.0,
        fee=0.01,
        requested_quantity=1.0,
        clipped_by=(),
    )


def skipped(decided_at: int, symbol: str = "AAA") -> OrderSkipped:
    step = decided_at + 1
    return OrderSkipped(
        event_id=event_id(RUN, step, "skip", symbol),
        cause_id=event_id(RUN, decided_at, "decision", symbol),
        run_id=RUN,
        event_time=1_700_000_000 * 10**9 + step * DAY,
        symbol=symbol,
        step=step,
        side="buy",
        reason="min_trade_value",
        requested_quantity=1.0,
    )


class Tables:
    """The detector's table as a dict: what the changelog would restore."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def detector(self, **settings: Any) -> Detector:
        config = DetectorConfig(**settings)
        return Detector(config, DetectorMetrics(CollectorRegistry()), self.state)


def healthy_raw(step: int) -> float:
    """Return a raw action spread over every bin, never the same value twice in a row."""
    return round(-0.95 + (step * 7 % 20) / 10.5, 6)


def test_an_always_buy_small_agent_raises_its_alerts_at_its_50th_decision() -> None:
    detector = Tables().detector()

    raised: dict[int, list[Any]] = {}
    for step in range(60):
        raised[step] = detector.on_decision(decision(step))
        raised[step] += detector.on_order(filled(decided_at=step))

    first = min(step for step, alerts in raised.items() if alerts)
    assert first == 49
    assert {(a.metric, a.severity) for a in raised[49] if isinstance(a, CollapseDetected)} == {
        ("dominance", "warning"),
        ("entropy", "critical"),
        ("repeats", "warning"),
    }
    assert all(a.actions == 50 for a in raised[49])
    assert not any(raised[step] for step in range(50, 60))  # one open alert per metric


def test_a_healthy_agent_raises_no_alert() -> None:
    detector = Tables().detector(trade_frequency=0)

    alerts = [
        a for step in range(200) for a in detector.on_decision(decision(step, healthy_raw(step)))
    ]

    assert alerts == []


def test_a_redelivered_decision_is_counted_once() -> None:
    detector = Tables().detector()
    for step in range(10):
        detector.on_decision(decision(step, healthy_raw(step)))

    for step in range(5, 10):
        assert detector.on_decision(decision(step, healthy_raw(step))) == []

    assert len(detector.window(f"{RUN}|AAA")) == 10


def test_a_fill_settles_the_decision_of_the_step_before_as_filled() -> None:
    detector = Tables().detector()
    detector.on_decision(decision(0))

    detector.on_order(filled(decided_at=0))

    stats = detector.window(f"{RUN}|AAA").stats()
    assert (stats.settled, stats.trade_frequency) == (1, 1.0)


def test_a_decision_without_a_fill_settles_unfilled_at_the_agents_next_decision() -> None:
    detector = Tables().detector()
    window = detector.window(f"{RUN}|AAA")
    detector.on_decision(decision(0))
    detector.on_order(filled(decided_at=0))
    detector.on_decision(decision(1, 0.0, "hold"))
    pending = window.stats()

    detector.on_decision(decision(2))  # the ledger wrote step 2's fills before it
    settled = window.stats()

    assert (pending.settled, pending.trade_frequency) == (1, 1.0)
    assert (settled.settled, settled.trade_frequency) == (2, 0.5)


def test_an_agent_that_never_fills_raises_the_trade_frequency_alert() -> None:
    detector = Tables().detector()
    raised = []
    for step in range(60):
        raised += detector.on_decision(decision(step, healthy_raw(step)))
        raised += detector.on_order(skipped(decided_at=step))

    assert [(a.metric, a.actions) for a in raised] == [("trade_frequency", 50)]


def test_a_restarted_detector_continues_its_windows_and_open_alerts_from_the_tables() -> None:
    tables = Tables()
    first = tables.detector()
    for step in range(60):  # one batch per step, as a live run forwards them
        first.on_records([decision(step), filled(decided_at=step)])
        first.persist()

    restarted = tables.detector()
    rebuilt = restarted.window(f"{RUN}|AAA").stats()
    raised = [a for step in range(60, 70) for a in restarted.on_decision(decision(step))]

    assert rebuilt == first.window(f"{RUN}|AAA").stats()
    assert (rebuilt.actions, rebuilt.settled, rebuilt.trade_frequency) == (60, 60, 1.0)
    assert raised == []  # the open alerts came back with their table
    assert len(restarted.window(f"{RUN}|AAA")) == 70


def test_a_full_window_keeps_its_last_decisions_across_a_restart() -> None:
    tables = Tables()
    first = tables.detector(window=50)
    for step in range(120):
        first.on_records([decision(step, healthy_raw(step)), skipped(decided_at=step)])
        first.persist()

    restarted = tables.detector(window=50)

    assert restarted.window(f"{RUN}|AAA").stats() == first.window(f"{RUN}|AAA").stats()
    assert len(tables.state) == 1 + 2 * 50 + 2  # a head and a ring of segments: bounded


def test_a_batch_writes_one_segment_and_one_head_per_agent() -> None:
    writes: list[str] = []

    class Recorded(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            writes.append(key)
            super().__setitem__(key, value)

    detector = Detector(DetectorConfig(), DetectorMetrics(CollectorRegistry()), Recorded())
    batch = [
        r
        for step in range(100)
        for symbol in ("AAA", "BBB")
        for r in (decision(step, healthy_raw(step), symbol=symbol), filled(step, symbol))
    ]

    detector.on_records(batch)
    detector.persist()

    assert sorted(writes) == [f"{RUN}|AAA", f"{RUN}|AAA|0", f"{RUN}|BBB", f"{RUN}|BBB|0"]


def test_a_batch_taken_again_after_a_restart_is_counted_once() -> None:
    tables = Tables()
    first = tables.detector()
    batches = [
        [r for step in range(i, i + 10) for r in (decision(step), filled(decided_at=step))]
        for i in range(0, 100, 10)
    ]
    for batch in batches[:6]:
        first.on_records(batch)
        first.persist()
    first.on_records(batches[6])  # killed before its state reached the table

    restarted = tables.detector()
    raised = [a for batch in batches[4:] for a in restarted.on_records(batch)]  # redelivered
    restarted.persist()
    restarted_again = tables.detector()

    once = Tables().detector()
    for batch in batches:
        once.on_records(batch)
    expected = once.window(f"{RUN}|AAA").stats()
    assert restarted.window(f"{RUN}|AAA").stats() == expected
    assert restarted_again.window(f"{RUN}|AAA").stats() == expected
    assert expected.actions == 100
    assert raised == []  # the alerts of step 49 were open before the kill


def test_an_alert_whose_state_was_lost_is_raised_again_with_the_same_id() -> None:
    tables = Tables()
    first = tables.detector()
    batch = [r for step in range(60) for r in (decision(step), filled(decided_at=step))]
    before = first.on_records(batch)  # sent, then killed before persist

    again = tables.detector().on_records(batch)

    assert [a.event_id for a in again] == [a.event_id for a in before]
    assert {a.metric for a in before} == {"dominance", "entropy", "repeats"}


def test_only_decisions_and_orders_of_the_watched_run_feed_the_windows() -> None:
    config = DetectorConfig(run_id=RUN)
    closed = PortfolioClosed(
        event_id="x", cause_id="x", run_id=RUN, event_time=0, steps=1, final_equity=1.0
    )

    assert watched(decision(0), config)
    assert watched(filled(0), config)
    assert watched(skipped(0), config)
    assert not watched(decision(0, run="another-run"), config)
    assert not watched(closed, config)
    assert watched(decision(0, run="another-run"), DetectorConfig())


def test_a_decision_of_an_unknown_kind_is_refused_with_the_reason() -> None:
    assert ledger_problem(decision(0, kind="short")) == (
        "decision kind 'short' is not one of hold, buy, sell"
    )
    assert ledger_problem(decision(0)) is None


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_taken_metrics_port_is_refused_naming_its_setting(listening_port: int) -> None:
    with pytest.raises(Refused, match=f"port {listening_port} .*TRADINGBOT_DETECTOR_METRICS_PORT"):
        serve_metrics(listening_port, CollectorRegistry())


def test_a_taken_web_port_is_refused_naming_its_setting(listening_port: int) -> None:
    with pytest.raises(Refused, match=f"port {listening_port} .*TRADINGBOT_DETECTOR_WEB_PORT"):
        check_web_port(listening_port)


def test_a_batch_of_ledger_records_comes_back_whole_and_in_order() -> None:
    records = [decision(step, healthy_raw(step)) for step in range(300)]
    payloads = [CODEC.encode(r) for r in records]

    framed = list(batches(payloads, limit=16 * 1024))
    unpacked = [r for value in framed for r in unpack(value, DetectorConfig())[0]]

    assert len(framed) > 1
    assert all(len(value) <= 16 * 1024 + 512 for value in framed)
    assert unpacked == records


def test_a_bad_record_in_a_batch_is_dead_lettered_with_its_place_and_the_rest_kept() -> None:
    good = [CODEC.encode(decision(0)), CODEC.encode(decision(2))]
    value = encode_batch([good[0], CODEC.encode(decision(1, kind="short")), good[1]])

    records, problems = unpack(value, DetectorConfig())

    assert [r.step for r in records] == [0, 2]
    assert [(index, reason) for index, _, reason in problems] == [
        (1, "decision kind 'short' is not one of hold, buy, sell")
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"type":"ledger_records","v":1,"data":{"records":5}}', "invalid ledger_records"),
        (b'{"type":"ledger_records","v":2,"data":{"records":[]}}', "v2 is not supported"),
        (b"not json", "not an event envelope"),
        (b'{"type":"who_knows","v":1,"data":{}}', "unknown event type 'who_knows'"),
    ],
)
def test_a_record_that_is_neither_a_batch_nor_a_ledger_record_is_dead_lettered(
    value: bytes, reason: str
) -> None:
    records, problems = unpack(value, DetectorConfig())

    assert records == []
    assert len(problems) == 1 and problems[0][0] is None and reason in problems[0][2]


def test_a_single_ledger_record_still_feeds_the_windows() -> None:
    records, problems = unpack(CODEC.encode(filled(3)), DetectorConfig())

    assert (records, problems) == ([filled(3)], [])


def test_a_symbol_goes_to_the_partition_kafkas_default_partitioner_gives_its_key() -> None:
    partitions = list(range(8))
    for symbol in ("AAA", "BBB", "S000", "S143", "GNW"):
        expected = DefaultPartitioner()(symbol.encode(), partitions, partitions)
        assert partition_of(symbol, 8) == expected


def test_revoked_partitions_forget_their_windows_and_keep_the_others() -> None:
    tables = Tables()
    detector = tables.detector()
    here, there = (
        "AAA",
        next(
            s for s in ("BBB", "CCC", "DDD", "EEE") if partition_of(s, 8) != partition_of("AAA", 8)
        ),
    )
    detector.on_records([decision(0, symbol=here), decision(0, symbol=there)])
    detector.persist()
    detector.on_records([decision(1, symbol=here), decision(1, symbol=there)])  # not persisted

    detector.forget({partition_of(here, 8)})
    detector.persist()

    assert len(detector.window(f"{RUN}|{here}")) == 1  # rebuilt from the table
    assert len(detector.window(f"{RUN}|{there}")) == 2  # untouched, and now persisted
    assert len(tables.detector().window(f"{RUN}|{there}")) == 2
