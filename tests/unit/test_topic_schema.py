"""Unit tests for task-updates message validation in gateway/topic_schema.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors.session_core import IncomingEvent
from gateway.topic_schema import (
    REASONS,
    InvalidEvent,
    TaskEvent,
    TopicLimits,
    parse_topic_message,
)

LIM = TopicLimits()

# The publisher's payloads exactly as written in the task-updates contract.
CREATED = '{"type": "task_created", "data": {"id": 123, "title": "New Task", "description": "Description", "completed": false}}'  # noqa: E501
UPDATED = '{"type": "task_updated", "data": {"id": 123, "title": "Updated Task", "completed": true}}'  # noqa: E501
DELETED = '{"type": "task_deleted", "data": {"id": 123}}'
COMPLETED = '{"type": "task_completed", "data": {"id": 123, "title": "New Task", "completed": true}}'  # noqa: E501


def envelope(data: Any, ce_id: Any = "ce-1", **extra: Any) -> dict[str, Any]:
    """A CloudEvent as Dapr posts it to the subscriber."""
    env = {"specversion": "1.0", "source": "todo-api", "type": "com.dapr.event.sent",
           "topic": "task-updates", "pubsubname": "pubsub", "datacontenttype": "application/json",
           "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
           "data": data, **extra}
    if ce_id is not None:
        env["id"] = ce_id
    return env


def parse(payload: Any, limits: TopicLimits = LIM, **kw: Any) -> TaskEvent:
    return parse_topic_message(envelope(payload, **kw), 1000, limits)


def task(**fields: Any) -> dict[str, Any]:
    return {"type": "task_updated", "data": {"id": 1, **fields}}


def nested(levels: int) -> Any:
    v: Any = 0
    for _ in range(levels):
        v = [v]
    return v


# -- the contract's sample payloads -------------------------------------------------------------
SAMPLES = [
    ("task_created", CREATED), ("task_updated", UPDATED), ("task_deleted", DELETED),
    ("task_completed", COMPLETED),
]


@pytest.mark.parametrize("as_string", [False, True], ids=["data-object", "data-json-string"])
@pytest.mark.parametrize(("etype", "text"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_sample_payloads_accepted(etype: str, text: str, as_string: bool) -> None:
    payload = json.loads(text)
    env = envelope(text if as_string else payload)
    ev = parse_topic_message(env, len(json.dumps(env)), LIM)
    assert ev == TaskEvent(IncomingEvent("ce-1", etype, payload["data"], "123", None),
                           audience=None)


# -- accepted variations ------------------------------------------------------------------------
def test_event_id_from_payload_wins() -> None:
    assert parse({**task(), "event_id": "pub-7"}).event.id == "pub-7"


def test_event_id_falls_back_to_cloudevent_id() -> None:
    assert parse(task(), ce_id="3f1c-uuid").event.id == "3f1c-uuid"


def test_event_id_without_cloudevent_id() -> None:
    assert parse({**task(), "event_id": "pub-7"}, ce_id=None).event.id == "pub-7"


@pytest.mark.parametrize(
    ("data_fields", "expected"),
    [
        ({"id": "t-1"}, ("t-1", None)),
        ({"id": 5, "list_id": 9}, ("5", "9")),
        ({"id": 5, "list_id": "inbox"}, ("5", "inbox")),
        ({"id": 5, "list_id": None}, ("5", None)),
        ({"id": -5}, ("-5", None)),
        ({"id": "x" * 128}, ("x" * 128, None)),
    ],
    ids=["str-id", "int-list-id", "str-list-id", "null-list-id", "negative-id", "128-char-id"],
)
def test_task_and_list_ids(data_fields: dict[str, Any], expected: tuple[str, str | None]) -> None:
    ev = parse({"type": "task_updated", "data": data_fields})
    assert (ev.event.task_id, ev.event.list_id) == expected


def test_unknown_keys_inside_data_pass_through() -> None:
    data = {"id": 1, "custom": {"a": [1, 2.5, None, True]}, "tags": ["x"], "big": 2**64 - 1,
            "small": -(2**63)}
    assert parse({"type": "task_created", "data": data}).event.data == data


def test_ts_accepted() -> None:
    assert parse({**task(), "ts": 1700000000.5}).event.type == "task_updated"
    assert parse({**task(), "ts": "2024-01-01T00:00:00Z"}).event.type == "task_updated"


AUDIENCES: list[tuple[str, dict[str, Any], tuple[str, ...] | None]] = [
    ("no-fields-broadcast", task(), None),
    ("explicit", {**task(), "audience": ["alice", "bob"]}, ("alice", "bob")),
    ("explicit-dedup-stable", {**task(), "audience": ["b", "a", "b"]}, ("b", "a")),
    ("explicit-int-ids", {**task(), "audience": [1, "1", 2]}, ("1", "2")),
    ("explicit-overrides-derived", {**task(owner_id="o"), "audience": ["x"]}, ("x",)),
    ("owner-only", task(owner_id="alice"), ("alice",)),
    ("owner-int", task(owner_id=42), ("42",)),
    ("assignees-only", task(assignees=["a", "b"]), ("a", "b")),
    ("shared-only", task(shared_with=["s"]), ("s",)),
    ("union-dedup-order", task(owner_id="o", assignees=["a", "o"], shared_with=["s", "a"]),
     ("o", "a", "s")),
    ("null-owner-is-absent", task(owner_id=None), None),
    ("null-owner-plus-assignees", task(owner_id=None, assignees=["a"]), ("a",)),
    ("empty-assignees-with-owner", task(owner_id="o", assignees=[]), ("o",)),
    ("id-charset", {**task(), "audience": ["a.b_c-d@e:f", "X" * 128]},
     ("a.b_c-d@e:f", "X" * 128)),
    ("1000-recipients", {**task(), "audience": [f"u{i}" for i in range(1000)]},
     tuple(f"u{i}" for i in range(1000))),
]


@pytest.mark.parametrize(("payload", "expected"), [a[1:] for a in AUDIENCES],
                         ids=[a[0] for a in AUDIENCES])
def test_audience(payload: dict[str, Any], expected: tuple[str, ...] | None) -> None:
    assert parse(payload).audience == expected


# -- refusals: every reason ---------------------------------------------------------------------
def refuse(env: Any, raw_size: int = 1000, limits: TopicLimits = LIM) -> tuple[Any, int,
                                                                                TopicLimits]:
    return env, raw_size, limits


E = envelope
BAD: list[tuple[str, str, tuple[Any, int, TopicLimits]]] = [
    ("too_large", "body-above-max-bytes", refuse(E(task()), 65537)),
    ("too_large", "string-above-max-string", refuse(E(task(title="t" * 16385)))),
    ("too_large", "data-string-above-max-bytes", refuse(E(json.dumps(task(title="t" * 70000))))),
    ("too_large", "small-limits", refuse(E(task()), 101, TopicLimits(max_bytes=100))),
    ("too_deep", "payload-depth-17", refuse(E(task(x=nested(15))))),
    ("too_deep", "data-string-10000-levels",
     refuse(E('{"type":"task_created","data":{"id":1,"x":' + "[" * 10_000 + "]" * 10_000 + "}}"))),
    ("bad_json", "data-string-not-json", refuse(E("not json"))),
    ("bad_json", "data-string-not-object", refuse(E("[1, 2]"))),
    ("bad_json", "data-string-duplicate-key",
     refuse(E('{"type":"task_created","type":"task_deleted","data":{"id":1}}'))),
    ("bad_json", "nan", refuse(E(task(score=float("nan"))))),
    ("bad_json", "infinity-in-string", refuse(E('{"type":"task_created","data":{"id":1,"x":Infinity}}'))),  # noqa: E501
    ("bad_json", "lone-surrogate", refuse(E(task(title="\ud800")))),
    ("bad_json", "lone-surrogate-escape-in-string",
     refuse(E('{"type":"task_created","data":{"id":1,"t":"\\udc00"}}'))),
    ("bad_json", "int-above-uint64", refuse(E(task(big=2**64)))),
    ("bad_json", "int-below-int64", refuse(E(task(small=-(2**63) - 1)))),
    ("bad_json", "non-string-key", refuse(E(task(meta={1: "x"})))),
    ("bad_json", "non-json-value", refuse(E(task(meta={1, 2})))),
    ("bad_envelope", "envelope-not-object", refuse(["data"])),
    ("bad_envelope", "envelope-without-data", refuse({"id": "ce-1"})),
    ("bad_envelope", "envelope-data-int", refuse(E(5))),
    ("bad_envelope", "envelope-data-null", refuse(E(None))),
    ("unknown_field", "extra-top-level-key", refuse(E({**task(), "user_id": "x"}))),
    ("unknown_type", "type-unknown", refuse(E({"type": "task_exploded", "data": {"id": 1}}))),
    ("unknown_type", "type-missing", refuse(E({"data": {"id": 1}}))),
    ("unknown_type", "type-not-string", refuse(E({"type": 1, "data": {"id": 1}}))),
    ("missing_data", "data-missing", refuse(E({"type": "task_created"}))),
    ("missing_data", "data-null", refuse(E({"type": "task_created", "data": None}))),
    ("bad_data", "data-list", refuse(E({"type": "task_created", "data": [1]}))),
    ("bad_data", "data-string", refuse(E({"type": "task_created", "data": '{"id": 1}'}))),
    ("bad_task_id", "id-missing", refuse(E({"type": "task_created", "data": {"title": "x"}}))),
    ("bad_task_id", "id-null", refuse(E({"type": "task_created", "data": {"id": None}}))),
    ("bad_task_id", "id-bool", refuse(E({"type": "task_created", "data": {"id": True}}))),
    ("bad_task_id", "id-empty", refuse(E({"type": "task_created", "data": {"id": ""}}))),
    ("bad_task_id", "id-129-chars", refuse(E({"type": "task_created", "data": {"id": "x" * 129}}))),
    ("bad_task_id", "id-float", refuse(E({"type": "task_created", "data": {"id": 1.5}}))),
    ("bad_task_id", "id-object", refuse(E({"type": "task_created", "data": {"id": {"n": 1}}}))),
    ("bad_list_id", "list-id-bool", refuse(E(task(list_id=False)))),
    ("bad_list_id", "list-id-empty", refuse(E(task(list_id="")))),
    ("bad_list_id", "list-id-list", refuse(E(task(list_id=[1])))),
    ("bad_event_id", "event-id-empty", refuse(E({**task(), "event_id": ""}))),
    ("bad_event_id", "event-id-int", refuse(E({**task(), "event_id": 5}))),
    ("bad_event_id", "event-id-newline", refuse(E({**task(), "event_id": "a\nb"}))),
    ("bad_event_id", "event-id-129-chars", refuse(E({**task(), "event_id": "e" * 129}))),
    ("bad_event_id", "no-event-id-anywhere", refuse(E(task(), ce_id=None))),
    ("bad_event_id", "cloudevent-id-int", refuse(E(task(), ce_id=5))),
    ("bad_audience", "explicit-empty", refuse(E({**task(), "audience": []}))),
    ("bad_audience", "explicit-null", refuse(E({**task(), "audience": None}))),
    ("bad_audience", "explicit-string", refuse(E({**task(), "audience": "alice"}))),
    ("bad_audience", "explicit-bad-chars", refuse(E({**task(), "audience": ["al ice"]}))),
    ("bad_audience", "explicit-newline", refuse(E({**task(), "audience": ["alice\n"]}))),
    ("bad_audience", "explicit-bool", refuse(E({**task(), "audience": [True]}))),
    ("bad_audience", "explicit-129-chars", refuse(E({**task(), "audience": ["u" * 129]}))),
    ("bad_audience", "explicit-1001", refuse(E({**task(), "audience": [str(i) for i in range(1001)]}))),  # noqa: E501
    ("bad_audience", "owner-bad-chars", refuse(E(task(owner_id="a/b")))),
    ("bad_audience", "assignees-not-list", refuse(E(task(assignees="alice")))),
    ("bad_audience", "shared-with-object", refuse(E(task(shared_with=[{"id": "a"}])))),
    ("bad_audience", "derived-names-nobody", refuse(E(task(assignees=[], shared_with=[])))),
    ("bad_audience", "derived-above-limit",
     refuse(E(task(owner_id="o", assignees=["a", "b"])), limits=TopicLimits(max_recipients=2))),
    ("bad_field", "ts-bool", refuse(E({**task(), "ts": True}))),
    ("bad_field", "ts-list", refuse(E({**task(), "ts": [1]}))),
    ("bad_version", "version-zero", refuse(E({**task(), "version": 0}))),
    ("bad_version", "version-negative", refuse(E({**task(), "version": -3}))),
    ("bad_version", "version-bool", refuse(E({**task(), "version": True}))),
    ("bad_version", "version-float", refuse(E({**task(), "version": 2.0}))),
    ("bad_version", "version-string", refuse(E({**task(), "version": "2"}))),
    ("bad_version", "version-null", refuse(E({**task(), "version": None}))),
    ("bad_version", "version-list", refuse(E({**task(), "version": [2]}))),
    ("bad_version", "version-2**63", refuse(E({**task(), "version": 2**63}))),
    ("bad_version", "version-in-data-string",
     refuse(E('{"type":"task_updated","data":{"id":1},"version":"7"}'))),
]


@pytest.mark.parametrize(("payload", "version"), [
    pytest.param(task(), None, id="absent"),
    pytest.param({**task(), "version": 1}, 1, id="one"),
    pytest.param({**task(), "version": 2**63 - 1}, 2**63 - 1, id="int64-max"),
    # The task's own data.version is content: never interpreted, never refused.
    pytest.param(task(version="etag-7"), None, id="data-version-is-content"),
    pytest.param({**task(version=3), "version": 9}, 9, id="top-level-wins"),
    pytest.param(json.dumps({**task(), "version": 4}), 4, id="data-json-string"),
])
def test_version_is_the_top_level_key(payload: Any, version: int | None) -> None:
    assert parse(payload).event.version == version


@pytest.mark.parametrize(("reason", "args"), [(b[0], b[2]) for b in BAD],
                         ids=[f"{b[0]}:{b[1]}" for b in BAD])
def test_refused(reason: str, args: tuple[Any, int, TopicLimits]) -> None:
    with pytest.raises(InvalidEvent) as ei:
        parse_topic_message(*args)
    assert ei.value.reason == reason
    assert str(ei.value)


def test_every_reason_is_tested() -> None:
    assert {b[0] for b in BAD} == REASONS


# -- limits -------------------------------------------------------------------------------------
def test_depth_at_limit_accepted() -> None:
    # payload (1) > data (2) > 14 nested lists = depth 16
    assert parse(task(x=nested(14))).event.task_id == "1"


def test_size_at_limit_accepted() -> None:
    assert parse_topic_message(envelope(task()), 65536, LIM).event.task_id == "1"


def test_custom_depth_limit() -> None:
    with pytest.raises(InvalidEvent) as ei:
        parse(task(x=[1]), TopicLimits(max_depth=2))
    assert ei.value.reason == "too_deep"
