"""Unit tests for the pure UserSession rules in actors/session_core.py."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.session_core import (
    AttachOutcome,
    AttachResult,
    ConnLease,
    DeliverResult,
    DeviceCursor,
    EventRecord,
    Filters,
    IncomingEvent,
    Limits,
    Liveness,
    Position,
    SessionMeta,
    ack,
    attach,
    deliver,
    detach,
    forget_dead,
    new_session,
    read_range,
    release,
    routes,
    set_filters,
    trim,
)

EPOCH = "ep1"
T0 = 10_000.0
LIM = Limits(
    max_events=100,
    max_age_s=1000.0,
    max_seen_ids=50,
    max_devices=4,
    max_connections=3,
    lease_s=10.0,
)


def fs(*items: str) -> frozenset[str]:
    return frozenset(items)


def ev(
    eid: str,
    type_: str = "task_created",
    task_id: str | None = "t1",
    list_id: str | None = "l1",
) -> IncomingEvent:
    return IncomingEvent(id=eid, type=type_, data={"title": eid}, task_id=task_id, list_id=list_id)


def assert_invariants(meta: SessionMeta, limits: Limits = LIM) -> None:
    meta.check()
    assert 1 <= meta.tail <= meta.head + 1
    assert len(meta.stamps) == meta.head - meta.tail + 1
    assert len(meta.seen) <= limits.max_seen_ids
    assert len({eid for eid, _ in meta.seen}) == len(meta.seen)
    assert len(meta.devices) <= limits.max_devices
    assert all(0 <= c.seq <= meta.head for c in meta.devices.values())


def session(n: int = 0, now: float = T0, limits: Limits = LIM) -> SessionMeta:
    """A session with events e1..en appended at ``now``."""
    meta = new_session(EPOCH)
    for i in range(1, n + 1):
        assert deliver(meta, ev(f"e{i}"), now, limits).status == "appended"
    return meta


def wire_json(obj: Any) -> Any:
    return json.loads(json.dumps(obj.to_wire(), allow_nan=False))


# --------------------------------------------------------------------------- Limits


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_events": 0},
        {"max_seen_ids": -1},
        {"max_devices": 0},
        {"max_connections": 0},
        {"max_events": True},
        {"lease_s": 0.0},
        {"max_age_s": -5.0},
        {"max_age_s": math.nan},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_limits_reject_unusable_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Limits(**kwargs)


def test_limits_from_wire_fills_defaults() -> None:
    assert Limits.from_wire({"max_events": 5}) == Limits(max_events=5)


# --------------------------------------------------------------------------- Filters

ALL = Filters()
TYPES = Filters(types=fs("task_created", "task_updated"))
TASKS = Filters(task_ids=fs("t1", "t2"))
LISTS = Filters(list_ids=fs("l1"))
COMBO = Filters(types=fs("task_created"), task_ids=fs("t1"), list_ids=fs("l1"))
NOTHING = Filters(types=frozenset())


@pytest.mark.parametrize(
    ("filters", "event_type", "task_id", "list_id", "expected"),
    [
        pytest.param(ALL, "task_deleted", None, None, True, id="no-filter-matches-all"),
        pytest.param(TYPES, "task_updated", None, None, True, id="type-in-set"),
        pytest.param(TYPES, "task_deleted", "t1", "l1", False, id="type-not-in-set"),
        pytest.param(TASKS, "task_created", "t2", None, True, id="task-in-set"),
        pytest.param(TASKS, "task_created", "t9", "l1", False, id="task-not-in-set"),
        pytest.param(TASKS, "task_created", None, "l1", False, id="task-none-never-matches"),
        pytest.param(LISTS, "task_created", None, "l1", True, id="list-in-set"),
        pytest.param(LISTS, "task_created", "t1", "l2", False, id="list-not-in-set"),
        pytest.param(LISTS, "task_created", "t1", None, False, id="list-none-never-matches"),
        pytest.param(COMBO, "task_created", "t1", "l1", True, id="all-dimensions-match"),
        pytest.param(COMBO, "task_updated", "t1", "l1", False, id="combo-type-mismatch"),
        pytest.param(COMBO, "task_created", "t2", "l1", False, id="combo-task-mismatch"),
        pytest.param(COMBO, "task_created", "t1", "l2", False, id="combo-list-mismatch"),
        pytest.param(NOTHING, "task_created", "t1", "l1", False, id="empty-set-matches-nothing"),
    ],
)
def test_filters_matches(
    filters: Filters, event_type: str, task_id: str | None, list_id: str | None, expected: bool
) -> None:
    assert filters.matches(event_type, task_id, list_id) is expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param(ALL, True, id="default"),
        pytest.param(TYPES, False, id="types"),
        pytest.param(TASKS, False, id="task_ids"),
        pytest.param(LISTS, False, id="list_ids"),
        pytest.param(NOTHING, False, id="empty-set-is-a-restriction"),
    ],
)
def test_filters_is_empty(filters: Filters, expected: bool) -> None:
    assert filters.is_empty() is expected


def test_filters_wire_is_sorted_and_none_preserving() -> None:
    f = Filters(types=fs("b", "a", "c"), task_ids=None, list_ids=frozenset())
    assert f.to_wire() == {"types": ["a", "b", "c"], "task_ids": None, "list_ids": []}


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param({}, Filters(), id="missing-keys-mean-any"),
        pytest.param({"types": ["x"]}, Filters(types=fs("x")), id="partial"),
        pytest.param({"task_ids": [7, "8"]}, Filters(task_ids=fs("7", "8")), id="numbers-to-str"),
        pytest.param({"list_ids": None}, Filters(), id="explicit-none"),
    ],
)
def test_filters_from_wire(wire: dict[str, Any], expected: Filters) -> None:
    assert Filters.from_wire(wire) == expected


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param({"types": "task_created"}, id="string-not-list"),
        pytest.param({"types": [None]}, id="null-item"),
        pytest.param({"task_ids": [True]}, id="bool-item"),
    ],
)
def test_filters_from_wire_rejects(wire: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Filters.from_wire(wire)


# --------------------------------------------------------------------------- new_session / Position


def test_new_session_is_empty_log() -> None:
    meta = new_session("abc_DEF-123")
    assert (meta.epoch, meta.head, meta.tail, meta.stamps, meta.seen) == (
        "abc_DEF-123",
        0,
        1,
        [],
        [],
    )
    assert meta.devices == {} and meta.conns == {} and meta.filters.is_empty()
    assert_invariants(meta)


@pytest.mark.parametrize("epoch", ["", "has space", "a:b", "x" * 65], ids=repr)
def test_new_session_rejects_bad_epoch(epoch: str) -> None:
    with pytest.raises(ValueError):
        new_session(epoch)


@pytest.mark.parametrize(
    ("text", "epoch", "seq"),
    [
        pytest.param("ep1:0", "ep1", 0, id="zero"),
        pytest.param("ep1:42", "ep1", 42, id="plain"),
        pytest.param("A-b_9:7", "A-b_9", 7, id="all-epoch-chars"),
        pytest.param("x" * 64 + ":1", "x" * 64, 1, id="epoch-64-chars"),
        pytest.param("e:9223372036854775807", "e", 2**63 - 1, id="int64-max"),
    ],
)
def test_position_parse_good(text: str, epoch: str, seq: int) -> None:
    pos = Position.parse(text)
    assert (pos.epoch, pos.seq) == (epoch, seq)
    assert str(pos) == text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("ep1", id="no-colon"),
        pytest.param(":5", id="no-epoch"),
        pytest.param("ep1:", id="no-seq"),
        pytest.param("ep1:-1", id="negative"),
        pytest.param("ep1:+1", id="plus-sign"),
        pytest.param("ep1:01", id="leading-zero"),
        pytest.param("ep1:1.0", id="float"),
        pytest.param("ep1:1e3", id="exponent"),
        pytest.param("ep1: 1", id="space-in-seq"),
        pytest.param("ep1:1\n", id="trailing-newline"),
        pytest.param("ep 1:1", id="space-in-epoch"),
        pytest.param("ep.1:1", id="dot-in-epoch"),
        pytest.param("é:1", id="non-ascii-epoch"),
        pytest.param("ep1:\u0661", id="non-ascii-digit"),
        pytest.param("x" * 65 + ":1", id="epoch-65-chars"),
        pytest.param("ep1:1:2", id="two-colons"),
        pytest.param("ep1:" + "9" * 20, id="seq-20-digits"),
    ],
)
def test_position_parse_bad(text: str) -> None:
    with pytest.raises(ValueError):
        Position.parse(text)


@pytest.mark.parametrize(("epoch", "seq"), [("", 1), ("ep1", -1), ("a:b", 0)], ids=repr)
def test_position_constructor_validates(epoch: str, seq: int) -> None:
    with pytest.raises(ValueError):
        Position(epoch, seq)


# --------------------------------------------------------------------------- deliver


def test_deliver_appends_gap_free_with_record_and_stamp() -> None:
    meta = session()
    seqs = [deliver(meta, ev(f"e{i}"), T0 + i, LIM).seq for i in range(1, 4)]
    assert seqs == [1, 2, 3]
    assert (meta.head, meta.tail, meta.stamps) == (3, 1, [T0 + 1, T0 + 2, T0 + 3])
    res = deliver(meta, ev("e4", "task_updated", "t9", None), 10_100, LIM)
    assert res.status == "appended" and res.delete == []
    assert res.record == EventRecord(
        seq=4,
        id="e4",
        type="task_updated",
        data={"title": "e4"},
        task_id="t9",
        list_id=None,
        ts=10_100.0,
    )
    assert isinstance(meta.stamps[-1], float)  # int clock values are normalised
    assert_invariants(meta)


def test_deliver_record_does_not_alias_event_data() -> None:
    meta = session()
    incoming = ev("e1")
    res = deliver(meta, incoming, T0, LIM)
    incoming.data["title"] = "changed"
    assert res.record is not None and res.record.data == {"title": "e1"}


def test_deliver_routes_to_live_connections() -> None:
    meta = session()
    attach(meta, "c2", "r1", "d1", None, T0, LIM)
    attach(meta, "c1", "r1", "d2", None, T0, LIM)
    attach(meta, "c3", "r2", "d1", None, T0, LIM)
    res = deliver(meta, ev("e1"), T0 + 1, LIM)
    assert res.routes == {"r1": ["c1", "c2"], "r2": ["c3"]}


def _setup_plain(meta: SessionMeta) -> None:
    deliver(meta, ev("e1"), T0, LIM)
    deliver(meta, ev("e2"), T0, LIM)


def _setup_filtered(meta: SessionMeta) -> None:
    set_filters(meta, Filters(types=fs("task_created")))
    assert deliver(meta, ev("e1", "task_deleted"), T0, LIM).status == "filtered"
    deliver(meta, ev("e2"), T0, LIM)
    set_filters(meta, Filters())  # clearing filters must not un-remember e1


def _setup_then_filter_out(meta: SessionMeta) -> None:
    _setup_plain(meta)
    set_filters(meta, Filters(types=fs("task_deleted")))  # dedup wins over the new filter


def _setup_trimmed(meta: SessionMeta) -> None:
    _setup_plain(meta)
    assert ack(meta, "d1", 2, T0, LIM) == [1, 2]


@pytest.mark.parametrize(
    ("setup", "expected_seq", "expect_routes"),
    [
        pytest.param(_setup_plain, 1, True, id="redelivery-of-retained-event"),
        pytest.param(_setup_then_filter_out, 1, True, id="redelivery-after-filters-changed"),
        pytest.param(_setup_filtered, 0, False, id="redelivery-of-filtered-event"),
        pytest.param(_setup_trimmed, 1, False, id="redelivery-of-trimmed-event"),
    ],
)
def test_deliver_dedup(
    setup: Callable[[SessionMeta], None], expected_seq: int, expect_routes: bool
) -> None:
    meta = session()
    setup(meta)
    attach(meta, "c1", "r1", "d1", None, T0, LIM)
    before = meta.to_wire()
    next_seq = meta.head + 1
    res = deliver(meta, ev("e1"), T0 + 1, LIM)
    assert (res.status, res.seq, res.record, res.delete) == ("duplicate", expected_seq, None, [])
    assert res.routes == ({"r1": ["c1"]} if expect_routes else {})
    assert meta.to_wire() == before  # a redelivery changes nothing
    set_filters(meta, Filters())
    assert deliver(meta, ev("e3"), T0 + 1, LIM).seq == next_seq  # and consumed no seq


def test_deliver_filtered_consumes_no_seq_and_is_remembered() -> None:
    meta = session(2)
    set_filters(meta, Filters(list_ids=fs("l1")))
    res = deliver(meta, ev("x", list_id="l2"), T0, LIM)
    assert (res.status, res.seq, res.record, res.routes, res.delete) == (
        "filtered",
        0,
        None,
        {},
        [],
    )
    assert meta.head == 2 and meta.seen[-1] == ("x", 0)
    assert deliver(meta, ev("y", list_id="l1"), T0, LIM).seq == 3
    assert_invariants(meta)


def test_set_filters_clear_lets_events_through() -> None:
    meta = session()
    set_filters(meta, Filters(types=fs("task_created")))
    assert deliver(meta, ev("a", "task_deleted"), T0, LIM).status == "filtered"
    set_filters(meta, Filters())
    assert meta.filters.is_empty()
    assert deliver(meta, ev("b", "task_deleted"), T0, LIM).status == "appended"


def test_seen_is_bounded_and_forgets_oldest() -> None:
    limits = Limits(max_seen_ids=5)
    meta = new_session(EPOCH)
    set_filters(meta, Filters(types=fs("task_created")))
    deliver(meta, ev("f0", "task_deleted"), T0, limits)  # filtered ids count toward the bound
    for i in range(1, 8):
        deliver(meta, ev(f"e{i}"), T0, limits)
    assert [eid for eid, _ in meta.seen] == ["e3", "e4", "e5", "e6", "e7"]
    # Known limitation of bounded memory: a forgotten id is accepted again.
    assert deliver(meta, ev("e1"), T0, limits).seq == 8
    assert deliver(meta, ev("e7"), T0, limits).status == "duplicate"
    assert_invariants(meta, limits)


# --------------------------------------------------------------------------- attach

NOW = T0 + 5


def _s5(meta: SessionMeta) -> None:
    for i in range(1, 6):
        deliver(meta, ev(f"e{i}"), T0, LIM)


def _s5_known_d1(meta: SessionMeta) -> None:
    _s5(meta)
    ack(meta, "d0", 0, T0, LIM)  # registered first: keeps everything retained
    ack(meta, "d1", 3, T0, LIM)


def _s5_trimmed(meta: SessionMeta) -> None:
    # d1 acks 1, then e1..e3 age out while d1 stays seen, so its cursor falls behind the tail.
    for i in range(1, 4):
        deliver(meta, ev(f"e{i}"), T0 - 1500, LIM)
    ack(meta, "d0", 0, T0 - 1500, LIM)
    ack(meta, "d1", 1, T0 - 1500, LIM)
    assert ack(meta, "d1", 0, T0 - 400, LIM) == [1, 2, 3]  # re-seen, not advanced; e1..e3 aged out
    ack(meta, "d0", 0, T0 - 400, LIM)
    for i in range(4, 6):
        deliver(meta, ev(f"e{i}"), T0, LIM)
    assert meta.tail == 4 and meta.devices["d1"].seq == 1


def _s5_full(meta: SessionMeta) -> None:
    _s5(meta)
    for i in range(3):
        assert attach(meta, f"c{i}", "r1", "dx", None, T0, LIM).outcome == "ok"


def _s5_full_of_dead(meta: SessionMeta) -> None:
    _s5(meta)
    for i in range(3):  # on r0, which the snapshot below no longer lists
        attach(meta, f"c{i}", "r0", "dx", None, NOW - LIM.replica_grace_s - 0.01, LIM)


LIVE = Liveness(frozenset({"r1", "r2"}), NOW)


@pytest.mark.parametrize(
    ("setup", "conn", "since", "outcome", "start", "resumed", "reason"),
    [
        pytest.param(_s5, "c9", None, "ok", 5, False, "", id="no-since-unknown-device"),
        pytest.param(_s5_known_d1, "c9", None, "ok", 3, True, "", id="no-since-known-device"),
        pytest.param(_s5, "c9", "ep1:2", "ok", 2, True, "", id="since-ok"),
        pytest.param(_s5, "c9", "ep1:0", "ok", 0, True, "", id="since-zero-untrimmed"),
        pytest.param(_s5, "c9", "ep1:5", "ok", 5, True, "", id="since-at-head"),
        pytest.param(_s5_known_d1, "c9", "ep1:1", "ok", 1, True, "", id="since-beats-cursor"),
        pytest.param(
            _s5, "c9", "other:2", "resync", 5, False, "epoch_mismatch", id="epoch-mismatch"
        ),
        pytest.param(_s5, "c9", "ep1:6", "resync", 5, False, "ahead_of_log", id="ahead-of-log"),
        pytest.param(_s5_trimmed, "c9", "ep1:2", "resync", 5, False, "too_old", id="since-too-old"),
        pytest.param(_s5_trimmed, "c9", "ep1:3", "ok", 3, True, "", id="since-at-tail-minus-1"),
        pytest.param(_s5_trimmed, "c9", None, "resync", 5, False, "too_old", id="cursor-too-old"),
        pytest.param(
            _s5_full, "c9", "ep1:2", "too_many_connections", 5, False, "", id="too-many-conns"
        ),
        pytest.param(_s5_full, "c1", "ep1:2", "ok", 2, True, "", id="reattach-same-conn-id"),
        pytest.param(
            _s5_full_of_dead, "c9", None, "ok", 5, False, "", id="dead-replica-frees-slots"
        ),
    ],
)
def test_attach_outcomes(
    setup: Callable[[SessionMeta], None],
    conn: str,
    since: str | None,
    outcome: AttachOutcome,
    start: int,
    resumed: bool,
    reason: str,
) -> None:
    meta = session()
    setup(meta)
    pos = Position.parse(since) if since else None
    res = attach(meta, conn, "r2", "d1", pos, NOW, LIM, LIVE)
    assert res == AttachResult(outcome, EPOCH, 5, start, start + 1, resumed, reason)
    registered = conn in meta.conns and meta.conns[conn].replica == "r2"
    assert registered is (outcome != "too_many_connections")
    assert_invariants(meta)


@pytest.mark.parametrize(
    ("setup", "since", "expected_cursor"),
    [
        pytest.param(_s5, None, 5, id="new-device-gets-head"),
        pytest.param(_s5, "ep1:2", 2, id="new-device-gets-since"),
        pytest.param(_s5, "zzz:2", 5, id="resync-sets-head"),
        pytest.param(_s5_trimmed, None, 5, id="too-old-cursor-resynced-to-head"),
        pytest.param(_s5_known_d1, "ep1:1", 3, id="since-below-cursor-never-lowers"),
        pytest.param(_s5_known_d1, "ep1:4", 4, id="since-above-cursor-raises"),
    ],
)
def test_attach_sets_device_cursor(
    setup: Callable[[SessionMeta], None], since: str | None, expected_cursor: int
) -> None:
    meta = session()
    setup(meta)
    attach(meta, "c9", "r1", "d1", Position.parse(since) if since else None, NOW, LIM)
    assert meta.devices["d1"] == DeviceCursor(expected_cursor, NOW)
    assert meta.conns["c9"] == ConnLease("r1", "d1", NOW)


def test_attach_too_many_leaves_meta_unchanged_except_dead_connections() -> None:
    meta = session(2)
    for i in range(3):
        attach(meta, f"c{i}", "r1", f"d{i}", None, T0, LIM)
    meta.conns["stale"] = ConnLease("r0", "d0", T0)  # r0 is gone by the next snapshot
    before = meta.to_wire()
    live = Liveness(frozenset({"r1"}), T0 + LIM.replica_grace_s + 1)
    res = attach(meta, "new", "r1", "dnew", Position(EPOCH, 1), T0 + 1, LIM, live)
    assert res.outcome == "too_many_connections"
    del before["conns"]["stale"]
    assert meta.to_wire() == before


def test_attach_evicts_least_recently_seen_device() -> None:
    meta = session(1)
    for i in range(4):
        attach(meta, "c", "r1", f"d{i}", None, T0 + i, LIM)
    attach(meta, "c", "r1", "d0", None, T0 + 10, LIM)  # d0 touched: d1 is now the oldest
    attach(meta, "c", "r1", "d4", None, T0 + 11, LIM)
    assert sorted(meta.devices) == ["d0", "d2", "d3", "d4"]


def test_attach_never_evicts_the_attaching_device_even_with_skewed_clock() -> None:
    meta = session(1)
    for i in range(4):
        attach(meta, "c", "r1", f"d{i}", None, T0 + i, LIM)
    attach(meta, "c", "r1", "late", None, T0 - 100, LIM)  # older clock than every device
    assert "late" in meta.devices and "d0" not in meta.devices
    assert len(meta.devices) == LIM.max_devices


# --------------------------------------------------------------------------- leases / routes


@pytest.mark.parametrize(
    ("replica", "since", "alive"),
    [
        pytest.param("r1", 0.0, True, id="listed-replica"),
        pytest.param("r9", 0.0, False, id="unlisted-and-old"),
        pytest.param("r9", T0 - 5.0, True, id="unlisted-but-within-grace"),
        pytest.param("r9", T0 - 5.01, False, id="unlisted-just-past-grace"),
        pytest.param("r9", T0 + 100, True, id="attached-after-the-snapshot"),
    ],
)
def test_liveness_judges_only_connections_older_than_the_snapshot(
    replica: str, since: float, alive: bool
) -> None:
    live = Liveness(frozenset({"r1"}), T0)
    assert live.holds(ConnLease(replica, "d", since), 5.0) is alive


def test_routes_keep_every_connection_until_a_snapshot_drops_dead_ones() -> None:
    meta = session()
    attach(meta, "c1", "r1", "d1", None, T0, LIM)
    attach(meta, "c2", "r2", "d2", None, T0, LIM)
    assert routes(meta) == {"r1": ["c1"], "r2": ["c2"]}
    assert deliver(meta, ev("e1"), T0 + 1000, LIM).routes == {"r1": ["c1"], "r2": ["c2"]}
    attach(meta, "c3", "r1", "d3", None, T0 + 60, LIM, Liveness(frozenset({"r1"}), T0 + 60))
    assert routes(meta) == {"r1": ["c1", "c3"]}  # r2 missed the snapshot: its route is gone


def test_forget_dead_spares_connections_newer_than_the_snapshot() -> None:
    # A replica restarting right after a snapshot showed it dead: its new connections must keep
    # their routes (else the next live event would be lost until another one revealed the gap).
    meta = session()
    attach(meta, "old", "r2", "d1", None, T0, LIM)
    attach(meta, "new", "r2", "d2", None, T0 + 20, LIM)
    stale_view = Liveness(frozenset({"r1"}), T0 + 18)
    assert forget_dead(meta, stale_view, LIM) is True
    assert routes(meta) == {"r2": ["new"]}
    assert forget_dead(meta, None, LIM) is False and forget_dead(meta, stale_view, LIM) is False


def test_routes_grouped_by_replica_and_sorted() -> None:
    meta = session()
    for cid, replica in [("b", "r2"), ("z", "r1"), ("a", "r2"), ("m", "r1")]:
        attach(meta, cid, replica, "d1", None, T0, Limits(max_connections=8))
    r = routes(meta)
    assert r == {"r1": ["m", "z"], "r2": ["a", "b"]}
    assert list(r) == ["r1", "r2"]


def test_detach_removes_connection_and_ignores_unknown() -> None:
    meta = session()
    attach(meta, "c1", "r1", "d1", None, T0, LIM)
    detach(meta, "c1")
    detach(meta, "never")
    assert meta.conns == {} and routes(meta) == {}
    assert "d1" in meta.devices  # the device (and its cursor) outlives the connection


# --------------------------------------------------------------------------- ack


@pytest.mark.parametrize(
    ("old", "seq", "expected"),
    [
        pytest.param(2, 4, 4, id="forward"),
        pytest.param(4, 2, 4, id="backward-ignored"),
        pytest.param(3, 3, 3, id="same"),
        pytest.param(3, 99, 5, id="clamped-at-head"),
        pytest.param(None, 3, 3, id="unknown-device-registered"),
        pytest.param(None, 99, 5, id="unknown-device-clamped"),
        pytest.param(None, -7, 0, id="unknown-device-negative"),
    ],
)
def test_ack_cursor(old: int | None, seq: int, expected: int) -> None:
    meta = session(5)
    ack(meta, "keep", 0, T0, LIM)  # a lagging device so nothing is trimmed
    if old is not None:
        ack(meta, "d1", old, T0, LIM)
    assert ack(meta, "d1", seq, T0 + 1, LIM) == []
    assert meta.devices["d1"] == DeviceCursor(expected, T0 + 1)


def test_ack_unknown_device_evicts_least_recently_seen() -> None:
    meta = session(1)
    for i in range(4):
        ack(meta, f"d{i}", 0, T0 + i, LIM)
    ack(meta, "new", 1, T0 + 10, LIM)
    assert sorted(meta.devices) == ["d1", "d2", "d3", "new"]
    ack(meta, "skewed", 1, T0 - 100, LIM)  # the acking device survives even if it looks oldest
    assert sorted(meta.devices) == ["d2", "d3", "new", "skewed"]


# --------------------------------------------------------------------------- trim


def test_trim_acked_by_all() -> None:
    meta = session(5)
    assert ack(meta, "d1", 3, T0, LIM) == [1, 2, 3]
    assert ack(meta, "d2", 4, T0, LIM) == []  # d1 still holds 4 and 5
    assert ack(meta, "d1", 5, T0, LIM) == [4]
    assert ack(meta, "d2", 5, T0, LIM) == [5]
    assert (meta.tail, meta.head, meta.stamps) == (6, 5, [])
    assert deliver(meta, ev("e6"), T0, LIM).seq == 6
    assert (meta.tail, meta.stamps) == (6, [T0])
    assert_invariants(meta)


def test_trim_without_devices_keeps_events() -> None:
    meta = session(5)
    assert trim(meta, T0, LIM) == []
    assert meta.tail == 1


@pytest.mark.parametrize(
    ("max_events", "n", "expected_tail"),
    [
        pytest.param(3, 2, 1, id="under"),
        pytest.param(3, 3, 1, id="at-limit"),
        pytest.param(3, 5, 3, id="over-by-two"),
        pytest.param(1, 4, 4, id="keep-only-newest"),
    ],
)
def test_trim_by_count_overrides_cursor(max_events: int, n: int, expected_tail: int) -> None:
    limits = Limits(max_events=max_events)
    meta = new_session(EPOCH)
    ack(meta, "laggard", 0, T0, limits)
    deleted: list[int] = []
    for i in range(1, n + 1):
        deleted += deliver(meta, ev(f"e{i}"), T0, limits).delete
    assert meta.tail == expected_tail
    assert deleted == list(range(1, expected_tail))
    assert_invariants(meta, limits)


@pytest.mark.parametrize(
    ("age", "removed"),
    [
        pytest.param(999.0, [], id="young"),
        pytest.param(1000.0, [], id="exactly-max-age-kept"),
        pytest.param(1000.5, [1, 2], id="older-than-max-age"),
    ],
)
def test_trim_by_age(age: float, removed: list[int]) -> None:
    meta = session(2)  # e1, e2 stamped T0; no devices, so only age can trim
    assert trim(meta, T0 + age, LIM) == removed
    assert meta.tail == 1 + len(removed)
    assert_invariants(meta)


def test_trim_by_age_stops_at_first_young_event() -> None:
    # Skewed clocks can leave an old stamp behind a young one; trimming stops at the young one.
    meta = SessionMeta(EPOCH, head=3, tail=1, stamps=[T0 - 5000, T0, T0 - 5000])
    assert trim(meta, T0, LIM) == [1]
    assert meta.tail == 2 and meta.stamps == [T0, T0 - 5000]


@pytest.mark.parametrize(
    ("idle", "expired"),
    [
        pytest.param(999.9, False, id="recently-seen"),
        pytest.param(1000.0, True, id="seen-exactly-max-age-ago"),
        pytest.param(5000.0, True, id="long-gone"),
    ],
)
def test_trim_expires_devices(idle: float, expired: bool) -> None:
    meta = session()
    ack(meta, "d1", 0, T0, LIM)
    trim(meta, T0 + idle, LIM)
    assert ("d1" not in meta.devices) is expired


def test_device_expiry_releases_acked_events() -> None:
    meta = session()
    ack(meta, "stale", 0, T0, LIM)
    for i in range(1, 4):
        deliver(meta, ev(f"e{i}"), T0 + 900, LIM)
    ack(meta, "active", 3, T0 + 900, LIM)
    assert meta.tail == 1  # stale (cursor 0) holds everything
    assert trim(meta, T0 + 1000, LIM) == [1, 2, 3]
    assert list(meta.devices) == ["active"]


def test_trim_never_drops_connections() -> None:
    meta = session()
    attach(meta, "c1", "r1", "d1", None, T0, LIM)
    trim(meta, T0 + 10 * LIM.max_age_s, LIM)
    assert list(meta.conns) == ["c1"]  # only a liveness snapshot or a detach removes it


def test_trim_applies_lowered_limits() -> None:
    meta = session(3)
    for i in range(4):
        ack(meta, f"d{i}", 0, T0 + i, LIM)
    small = Limits(max_devices=2, max_seen_ids=1)
    trim(meta, T0 + 5, small)
    assert sorted(meta.devices) == ["d2", "d3"] and meta.seen == [("e3", 3)]


# --------------------------------------------------------------------------- read_range


@pytest.mark.parametrize(
    ("after", "limit", "expected"),
    [
        pytest.param(3, 100, (4, 10), id="from-tail"),
        pytest.param(5, 2, (6, 7), id="limited"),
        pytest.param(9, 5, (10, 10), id="last-one"),
        pytest.param(10, 5, (11, 10), id="at-head-empty"),
        pytest.param(12, 5, (13, 10), id="ahead-empty"),
        pytest.param(5, 0, (6, 5), id="zero-limit-empty"),
        pytest.param(2, 100, None, id="trimmed"),
        pytest.param(-1, 100, None, id="negative"),
    ],
)
def test_read_range(after: int, limit: int, expected: tuple[int, int] | None) -> None:
    meta = session(10)
    ack(meta, "d1", 3, T0, LIM)
    ack(meta, "d2", 3, T0, LIM)
    assert meta.tail == 4
    assert read_range(meta, after, limit) == expected


def test_read_range_on_empty_log() -> None:
    assert read_range(new_session(EPOCH), 0, 10) == (1, 0)


# --------------------------------------------------------------------------- wire


def _full_meta() -> SessionMeta:
    meta = session(4)
    set_filters(meta, Filters(types=fs("task_created", "task_deleted"), list_ids=fs("l1")))
    deliver(meta, ev("f", "task_updated"), T0, LIM)
    attach(meta, "c1", "r1", "d1", Position(EPOCH, 2), T0, LIM)
    attach(meta, "c2", "r2", "d2", None, T0 + 0.125, LIM)
    ack(meta, "d2", 4, T0 + 0.5, LIM)
    return meta


WIRE_OBJECTS: list[Any] = [
    Limits(),
    Limits(max_events=7, max_age_s=1.5),
    Filters(),
    Filters(types=fs("a", "b"), task_ids=frozenset(), list_ids=fs("l")),
    ev("e1"),
    IncomingEvent(
        "e2", "task_deleted", {"n": 1, "o": {"f": 2.5, "z": None, "b": True}}, None, None
    ),
    EventRecord(3, "e3", "task_created", {"k": "v"}, "t", None, 1.25),
    DeviceCursor(4, 2.5),
    ConnLease("r1", "d1", 3.75),
    Position("ep1", 9),
    new_session(EPOCH),
    _full_meta(),
]


@pytest.mark.parametrize("obj", WIRE_OBJECTS, ids=lambda o: type(o).__name__)
def test_wire_round_trip_json(obj: Any) -> None:
    wire = obj.to_wire()
    text = json.dumps(wire, allow_nan=False, sort_keys=True)
    back = type(obj).from_wire(json.loads(text))
    assert back == obj
    assert json.dumps(back.to_wire(), sort_keys=True) == text  # stable encoding


@pytest.mark.parametrize("use_list", [True, False], ids=["lists", "tuples"])
@pytest.mark.parametrize("obj", WIRE_OBJECTS, ids=lambda o: type(o).__name__)
def test_wire_round_trip_msgpack(obj: Any, use_list: bool) -> None:
    packed = msgpack.packb(obj.to_wire())
    assert type(obj).from_wire(msgpack.unpackb(packed, use_list=use_list)) == obj


def _broken(**changes: Any) -> dict[str, Any]:
    wire = _full_meta().to_wire()
    wire.update(changes)
    return wire


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(_broken(v=2), id="unknown-version"),
        pytest.param(_broken(epoch="bad epoch"), id="bad-epoch"),
        pytest.param(_broken(head=-1, tail=0, stamps=[]), id="negative-head"),
        pytest.param(_broken(head=True), id="bool-head"),
        pytest.param(_broken(tail=7), id="tail-beyond-head-plus-one"),
        pytest.param(_broken(stamps=[1.0]), id="stamps-length-mismatch"),
        pytest.param(_broken(stamps=["x"] * 5), id="stamp-not-number"),
        pytest.param(_broken(seen=[["a", 99]]), id="seen-seq-beyond-head"),
        pytest.param(_broken(seen=[["a"]]), id="seen-item-shape"),
        pytest.param(_broken(devices={"d": {"seq": 9, "seen_at": 0.0}}), id="cursor-beyond-head"),
        pytest.param(_broken(devices={"d": {"seq": 1}}), id="cursor-missing-field"),
        pytest.param(_broken(conns=[]), id="conns-not-object"),
        pytest.param(_broken(filters={"types": 3}), id="bad-filters"),
        pytest.param({"epoch": "ep1", "head": 0, "tail": 1}, id="missing-fields"),
    ],
)
def test_session_meta_from_wire_rejects_corrupt(wire: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SessionMeta.from_wire(wire)


@pytest.mark.parametrize(
    ("cls", "wire"),
    [
        pytest.param(
            EventRecord,
            {"seq": 1, "id": "e", "type": "t", "data": [], "ts": 0.0},
            id="record-data-not-object",
        ),
        pytest.param(Position, {"epoch": "e", "seq": -1}, id="position-negative"),
    ],
)
def test_from_wire_rejects_bad_values(cls: Any, wire: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        cls.from_wire(wire)


# --------------------------------------------------------------------------- property test

P_LIM = Limits(
    max_events=6, max_age_s=100.0, max_seen_ids=8, max_devices=3, max_connections=2, lease_s=10.0,
    max_tasks=2, max_held=2, hold_s=0.5,
)
DEVICES = ["d0", "d1", "d2", "d3"]
CONNS = ["c0", "c1", "c2", "c3"]

dt = st.sampled_from([0.0, 0.0, 1.0, 9.0, 10.0, 45.0, 101.0])
op = st.one_of(
    st.tuples(
        st.just("deliver"),
        st.integers(0, 11),
        st.sampled_from(["task_created", "task_deleted"]),
        st.sampled_from([None, "t1", "t2", "t3"]),
        st.one_of(st.none(), st.integers(1, 6)),  # the producer's per-task version
        dt,
    ),
    st.tuples(st.just("ack"), st.sampled_from(DEVICES), st.integers(-1, 30), dt),
    st.tuples(
        st.just("attach"),
        st.sampled_from(CONNS),
        st.sampled_from(["r0", "r1"]),
        st.sampled_from(DEVICES),
        st.one_of(st.none(), st.tuples(st.sampled_from([EPOCH, "other"]), st.integers(0, 30))),
        dt,
    ),
    st.tuples(st.just("detach"), st.sampled_from(CONNS)),
    st.tuples(st.just("snapshot"), st.sampled_from(["r0", "r1"]), st.sampled_from(CONNS), dt),
    st.tuples(st.just("trim"), dt),
    st.tuples(st.just("release"), st.sampled_from([0.0, 0.2, 0.5, 1.0])),
    st.tuples(st.just("filters"), st.booleans()),
)


def _check_trim(
    meta: SessionMeta, old_tail: int, deleted: list[int], now: float, ts: dict[int, float]
) -> None:
    """Removed seqs are the old tail run; every removal above the min cursor was forced by count
    or age; and trimming was maximal (the new tail event is not removable)."""
    assert deleted == list(range(old_tail, meta.tail))
    floor = min((c.seq for c in meta.devices.values()), default=0)
    for s in deleted:
        if s > floor:
            assert meta.head - s + 1 > P_LIM.max_events or now - ts[s] > P_LIM.max_age_s
    if meta.tail <= meta.head:
        t = meta.tail
        assert meta.head - t + 1 <= P_LIM.max_events
        assert now - ts[t] <= P_LIM.max_age_s
        assert t > floor


def _check_released(meta: SessionMeta, old_head: int, old_tail: int, res: DeliverResult | None,
                    released: list[tuple[str, DeliverResult]], now: float,
                    ts: dict[int, float]) -> None:
    """The event's own append, then the released ones, took the next seqs gap-free; released
    events are recorded (appended, filtered or stale) and no longer held."""
    for eid, r in released:
        assert r.status in ("appended", "filtered", "stale") and eid not in meta.order.held
    results = ([res] if res is not None else []) + [r for _, r in released]
    appended = [r for r in results if r.status == "appended"]
    assert [r.seq for r in appended] == list(range(old_head + 1, meta.head + 1))
    for r in appended:
        assert r.record is not None and r.record.seq == r.seq
        ts[r.seq] = now
    if appended:
        _check_trim(meta, old_tail, [s for r in appended for s in r.delete], now, ts)


def _due(meta: SessionMeta, now: float) -> bool:
    """Anything still held whose hold is over?"""
    return any(now - h.first >= P_LIM.hold_s for h in meta.order.held.values())


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(op, max_size=40))
def test_random_operations_keep_invariants(ops: list[tuple[Any, ...]]) -> None:
    meta = new_session(EPOCH)
    now = T0
    ts: dict[int, float] = {}  # model: stamp of every seq ever appended
    for item in ops:
        kind = item[0]
        now += item[-1] if isinstance(item[-1], float) else 0.0
        old_head, old_tail = meta.head, meta.tail
        if kind == "deliver":
            _, n, type_, task, version, _ = item
            eid = f"e{n}"
            was_seen = any(i == eid for i, _ in meta.seen)
            was_held = eid in meta.order.held
            before = meta.to_wire()
            mark = meta.order.tasks.get(task) if task else None
            newest = mark.version if mark else 0
            res = deliver(meta, IncomingEvent(eid, type_, {}, task, None, version), now, P_LIM)
            released = dict(res.released)
            if was_seen:
                assert res.status == "duplicate" and meta.to_wire() == before
            elif was_held:
                assert res.status == "held" and res.seq == 0  # kept once, not twice
            elif res.status == "stale":
                # Never appended, never remembered: superseded by a recorded version or a delete.
                assert version is not None and mark is not None and res.newest == newest
                assert version <= newest or (mark.deleted and type_ != "task_created")
                assert res.seq == 0 and not res.routes and eid not in dict(meta.seen)
            elif res.status == "held":
                # Kept in the session (or released at once, by the bound, with the oldest).
                assert version is not None and version > newest + 1 and task is not None
                assert (eid in meta.order.held) != (eid in released)
                assert res.seq == 0 and not res.routes
            elif res.status == "filtered":
                assert res.seq == 0 and not meta.filters.matches(type_, task, None)
            else:
                assert res.status == "appended" and res.seq == old_head + 1
            if res.status in ("appended", "filtered") and version and task and not released:
                # Recorded: the task's newest version is this one, and it moved forward.
                assert version > newest or (mark is not None and mark.deleted)
                assert meta.order.tasks[task].version == version
                assert eid not in meta.order.held
            _check_released(meta, old_head, old_tail, res, list(res.released), now, ts)
        elif kind == "release":
            got = release(meta, now, P_LIM)
            _check_released(meta, old_head, old_tail, None, got, now, ts)
            assert not _due(meta, now)
        elif kind == "ack":
            _, device, seq, _ = item
            before_cursor = meta.devices[device].seq if device in meta.devices else 0
            deleted = ack(meta, device, seq, now, P_LIM)
            # Just touched, so never expired or evicted by its own ack; only moves forward.
            assert meta.devices[device].seq == max(before_cursor, min(seq, meta.head))
            _check_trim(meta, old_tail, deleted, now, ts)
        elif kind == "attach":
            _, conn, replica, device, since, _ = item
            pos = Position(*since) if since else None
            att = attach(meta, conn, replica, device, pos, now, P_LIM)
            assert meta.tail == old_tail and meta.head == old_head
            if att.outcome == "ok":
                assert meta.tail - 1 <= att.start <= meta.head
                assert read_range(meta, att.start, 1000) == (att.start + 1, meta.head)
                assert meta.devices[device].seq >= att.start
            elif att.outcome == "resync":
                assert att.start == meta.head == meta.devices[device].seq and att.reason
            else:
                assert conn not in meta.conns
        elif kind == "detach":
            detach(meta, item[1])
            assert item[1] not in meta.conns
        elif kind == "snapshot":
            # An attach from the surviving replica with a snapshot that lists only it.
            _, replica, conn, _ = item
            live = Liveness(frozenset({replica}), now)
            older = {c for c, lease in meta.conns.items()
                     if lease.replica != replica and lease.since + P_LIM.replica_grace_s < now}
            attach(meta, conn, replica, "d0", None, now, P_LIM, live)
            assert not (older - {conn}) & set(meta.conns)  # judged dead: gone for good
        elif kind == "trim":
            _check_trim(meta, old_tail, trim(meta, now, P_LIM), now, ts)
        else:
            set_filters(meta, Filters(types=fs("task_created")) if item[1] else Filters())

        assert_invariants(meta, P_LIM)
        assert len(meta.order.tasks) <= P_LIM.max_tasks
        assert len(meta.order.held) <= P_LIM.max_held
        assert meta.head >= old_head and meta.tail >= old_tail
        assert meta.stamps == [ts[s] for s in range(meta.tail, meta.head + 1)]
        assert sorted(ts) == list(range(1, meta.head + 1))  # gap-free, +1
        assert sum(len(v) for v in routes(meta).values()) <= P_LIM.max_connections
        assert SessionMeta.from_wire(json.loads(json.dumps(meta.to_wire()))) == meta
