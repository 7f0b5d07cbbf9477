"""Hostile task-updates bodies at the byte level (gateway.topic_schema.parse_topic_body).

test_topic_schema.py covers the schema on already-parsed envelopes; these are the raw bodies
daprd posts to /internal/dapr/task-updates, before any JSON parsing. The contract: only
InvalidEvent escapes (the route answers DROP -> dead-letter topic), never another exception (a 500
that Dapr retries), and the size limit is checked before a parser runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.topic_schema import REASONS, InvalidEvent, TopicLimits, parse_topic_body

LIM = TopicLimits()


def cloudevent(data: Any) -> bytes:
    """The structured CloudEvent daprd posts (data embedded as JSON when it parsed)."""
    return json.dumps({"specversion": "1.0", "id": "ce-1", "source": "producer",
                       "type": "com.dapr.event.sent", "topic": "task-updates",
                       "pubsubname": "pubsub", "datacontenttype": "application/json",
                       "data": data}).encode()


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


GOOD = cloudevent({"type": "task_created", "data": {"id": 1}})

HOSTILE: list[tuple[str, bytes, str]] = [
    # The reported bug: daprd's Go parser embeds up to 10000 levels as an object, Python's C
    # scanner gives up near 1000 with RecursionError -> was a 500 (retried), now DROP.
    ("deep-5000-in-envelope",
     b'{"id":"ce-1","data":{"type":"task_created","data":{"id":1,"x":' + deep(5000).encode()
     + b"}}}", "too_deep"),
    ("deep-5000-top-level", deep(5000).encode(), "too_deep"),
    ("deep-objects-3000", b'{"a":' * 3000 + b"1" + b"}" * 3000, "too_deep"),
    # Size before parsing: an oversized body is refused as too_large even when it is not JSON.
    ("oversized-not-json", b"x" * 70_000, "too_large"),
    ("oversized-deep", deep(40_000).encode(), "too_large"),
    ("oversized-valid", cloudevent({"type": "task_created", "data": {"id": 1, "t": "x" * 70_000}}),
     "too_large"),
    ("empty-body", b"", "bad_json"),
    ("whitespace-body", b" \r\n\t ", "bad_json"),
    ("binary-junk", b"\x00\xff\xfe\x80garbage", "bad_json"),
    ("invalid-utf8-in-string", b'{"id":"ce-1","data":{"type":"task_created","data":{"id":"\xff"}}}',
     "bad_json"),
    ("truncated", GOOD[:-5], "bad_json"),
    ("trailing-garbage", GOOD + b"}", "bad_json"),
    ("int-5000-digits", b'{"id":"ce-1","data":{"type":"task_created","data":{"id":'
     + b"9" * 5000 + b"}}}", "bad_json"),
    ("nan-literal", b'{"id":"ce-1","data":{"type":"task_created","data":{"id":1,"x":NaN}}}',
     "bad_json"),
    ("lone-surrogate-escape",
     b'{"id":"ce-1","data":{"type":"task_created","data":{"id":1,"t":"\\ud800"}}}', "bad_json"),
    ("top-level-array", b"[1,2,3]", "bad_envelope"),
    ("top-level-string", b'"task_created"', "bad_envelope"),
    ("data-not-json-text", cloudevent("hello world"), "bad_json"),
    ("unknown-type", cloudevent({"type": "task_exploded", "data": {"id": 1}}), "unknown_type"),
    ("type-with-nul", cloudevent({"type": "task_created\x00", "data": {"id": 1}}),
     "unknown_type"),
    ("type-with-rtl-override", cloudevent({"type": "\u202etask_created", "data": {"id": 1}}),
     "unknown_type"),
    ("missing-data-id", cloudevent({"type": "task_created", "data": {"title": "x"}}),
     "bad_task_id"),
    ("data-id-object", cloudevent({"type": "task_created", "data": {"id": {"$gt": ""}}}),
     "bad_task_id"),
    ("audience-with-space", cloudevent({"type": "task_created", "data": {"id": 1},
                                        "audience": ["bad user"]}), "bad_audience"),
    ("audience-with-nul", cloudevent({"type": "task_created", "data": {"id": 1},
                                      "audience": ["alice\x00"]}), "bad_audience"),
    ("audience-rtl-override", cloudevent({"type": "task_created", "data": {"id": 1},
                                          "audience": ["\u202ealice"]}), "bad_audience"),
    ("audience-wildcard", cloudevent({"type": "task_created", "data": {"id": 1},
                                      "audience": ["*"]}), "bad_audience"),
    # Above int64 but within the tree's uint64 range: the version check refuses it.
    ("version-uint64-max", b'{"id":"ce-1","data":{"type":"task_created","data":{"id":1},'
     b'"version":18446744073709551615}}', "bad_version"),
    ("version-30-digits", b'{"id":"ce-1","data":{"type":"task_created","data":{"id":1},'
     b'"version":' + b"9" * 30 + b"}}", "bad_json"),
    ("version-exponent", b'{"id":"ce-1","data":{"type":"task_created","data":{"id":1},'
     b'"version":1e3}}', "bad_version"),
    ("version-negative-zero", b'{"id":"ce-1","data":{"type":"task_created","data":{"id":1},'
     b'"version":-0}}', "bad_version"),
    ("version-nested-object", cloudevent({"type": "task_created", "data": {"id": 1},
                                          "version": {"n": 1}}), "bad_version"),
    ("version-with-nul", cloudevent({"type": "task_created", "data": {"id": 1},
                                     "version": "1\x00"}), "bad_version"),
]


@pytest.mark.parametrize(("raw", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_body_is_invalid_event(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as ei:
        parse_topic_body(raw, LIM)
    assert ei.value.reason == reason
    assert ei.value.reason in REASONS


def test_size_is_checked_before_parsing() -> None:
    # A body one byte over a small limit is refused as too_large although it is not JSON.
    with pytest.raises(InvalidEvent) as ei:
        parse_topic_body(b"{" * 101, TopicLimits(max_bytes=100))
    assert ei.value.reason == "too_large"


def test_valid_body_still_parses() -> None:
    ev = parse_topic_body(GOOD, LIM)
    assert (ev.event.type, ev.event.task_id, ev.event.id) == ("task_created", "1", "ce-1")


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_only_raise_invalid_event(raw: bytes) -> None:
    try:
        parse_topic_body(raw, LIM)
    except InvalidEvent as e:
        assert e.reason in REASONS


@FUZZ
@given(st.integers(1, 20_000), st.sampled_from(["[", '{"a":']))
def test_any_nesting_depth_only_raises_invalid_event(levels: int, opener: str) -> None:
    closer, inner = ("]", "") if opener == "[" else ("}", "1")
    raw = (b'{"id":"ce-1","data":{"type":"task_created","data":{"id":1,"x":'
           + (opener * levels + inner + closer * levels).encode() + b"}}}")
    try:
        ev = parse_topic_body(raw, LIM)
    except InvalidEvent as e:
        assert e.reason in ("too_deep", "too_large")
        assert levels > LIM.max_depth - 2
    else:
        # depth counts from the payload: payload (1) > data (2) > the nesting under test
        assert levels <= LIM.max_depth - 2 and ev.event.task_id == "1"
