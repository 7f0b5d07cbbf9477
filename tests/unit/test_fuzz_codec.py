"""Property tests: the codec and the topic parser only ever fail with their own error types."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import protocol
from gateway.protocol import CodecLimits, FilterSpec, ProtocolError, decode, encode
from gateway.topic_schema import USER_ID_RE, InvalidEvent, TopicLimits, parse_topic_message

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIM = CodecLimits()
TLIM = TopicLimits()
ENC = st.sampled_from(["json", "msgpack"])

scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=40) | st.integers(-(2**70), 2**70))
json_ish = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids,
                                                              max_size=5),
    max_leaves=30,
)
# Frames that get past the type check, so field validation is exercised too.
frame_ish = st.fixed_dictionaries(
    {"type": st.sampled_from(["ack", "subscribe", "unsubscribe", "ping", "pong", "refresh", "x"])},
    optional={
        "seq": json_ish, "ts": json_ish, "token": json_ish, "scope": json_ish,
        "filters": json_ish | st.fixed_dictionaries({}, optional={
            "types": st.lists(st.sampled_from(sorted(protocol.EVENT_TYPES)) | json_ish),
            "task_ids": json_ish, "list_ids": st.lists(scalars),
        }),
    },
)


def pack_any(v: Any) -> bytes:
    # Very large ints don't fit msgpack; those are the packer's problem, not the decoder's.
    try:
        return msgpack.packb(v, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return b"\xc0"


def decode_or_protocol_error(raw: str | bytes, enc: protocol.Encoding) -> None:
    try:
        frame = decode(raw, enc, LIM)
    except ProtocolError as e:
        assert e.code in protocol.ERROR_CODES
        return
    assert isinstance(frame, protocol.Ack | protocol.Subscribe | protocol.Unsubscribe
                      | protocol.Ping | protocol.Pong | protocol.Refresh)


@FUZZ
@given(st.text(max_size=300), ENC)
def test_decode_arbitrary_text(raw: str, enc: protocol.Encoding) -> None:
    decode_or_protocol_error(raw, enc)


@FUZZ
@given(st.binary(max_size=300), ENC)
def test_decode_arbitrary_bytes(raw: bytes, enc: protocol.Encoding) -> None:
    decode_or_protocol_error(raw, enc)


@FUZZ
@given(json_ish | frame_ish, ENC)
def test_decode_arbitrary_values(value: Any, enc: protocol.Encoding) -> None:
    raw = json.dumps(value) if enc == "json" else pack_any(value)
    decode_or_protocol_error(raw, enc)


# -- round trip ---------------------------------------------------------------------------------
text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
ids = st.lists(text | st.integers(-(10**20), 10**20).map(str), unique=True, max_size=5)
opt_ids = st.none() | ids.map(tuple)
specs = st.builds(
    FilterSpec,
    types=st.none() | st.lists(st.sampled_from(sorted(protocol.EVENT_TYPES)), unique=True)
    .map(tuple),
    task_ids=opt_ids, list_ids=opt_ids,
)
scopes = st.sampled_from(["connection", "user"])
ts = st.none() | st.floats(allow_nan=False, allow_infinity=False)
client_frames = st.one_of(
    st.builds(protocol.Ack, st.integers(0, protocol.MAX_SEQ)),
    st.builds(protocol.Subscribe, specs, scopes),
    st.builds(protocol.Unsubscribe, scopes),
    st.builds(protocol.Ping, ts),
    st.builds(protocol.Pong, ts),
    st.builds(protocol.Refresh, st.text(st.characters(exclude_categories=("Cs",)), min_size=1,
                                        max_size=500)),
)


@FUZZ
@given(client_frames, ENC)
def test_round_trip(frame: protocol.ClientFrame, enc: protocol.Encoding) -> None:
    assert decode(encode(protocol.to_wire(frame), enc), enc, LIM) == frame


# -- topic messages -----------------------------------------------------------------------------
user_ids = st.one_of(st.from_regex(r"[A-Za-z0-9_.@:-]{1,20}", fullmatch=True), st.integers(),
                     json_ish)
task_data = st.fixed_dictionaries(
    {"id": st.integers() | text | json_ish},
    optional={"title": st.text(max_size=20), "list_id": st.integers() | text | json_ish,
              "owner_id": user_ids, "assignees": st.lists(user_ids, max_size=4) | json_ish,
              "shared_with": st.lists(user_ids, max_size=4), "extra": json_ish},
)
payloads = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(protocol.EVENT_TYPES)) | json_ish, "data": task_data},
    optional={"event_id": text | json_ish, "audience": st.lists(user_ids, max_size=4) | json_ish,
              "ts": st.floats() | text, "bogus": json_ish},
)
# Mostly well-formed messages, so the invariants below are checked on many accepted events.
plausible_payloads = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(protocol.EVENT_TYPES)),
     "data": st.fixed_dictionaries(
         {"id": st.integers(0, 10**6) | text},
         optional={"list_id": st.integers(0, 99) | st.none(), "owner_id": user_ids,
                   "assignees": st.lists(user_ids, max_size=4), "extra": json_ish},
     )},
    optional={"event_id": text, "audience": st.lists(user_ids, max_size=4)},
)
envelopes = st.one_of(
    json_ish,
    st.fixed_dictionaries(
        {"data": payloads | payloads.map(lambda p: json.dumps(p)) | json_ish},
        optional={"id": text | json_ish, "datacontenttype": st.just("application/json")},
    ),
    st.fixed_dictionaries(
        {"id": text, "data": plausible_payloads | plausible_payloads.map(json.dumps)}
    ),
)


@FUZZ
@given(envelopes, st.integers(0, 70_000))
def test_parse_topic_message_only_raises_invalid_event(env: Any, raw_size: int) -> None:
    try:
        ev = parse_topic_message(env, raw_size, TLIM)
    except InvalidEvent as e:
        assert e.reason and str(e)
        return
    assert raw_size <= TLIM.max_bytes
    e = ev.event
    assert e.type in protocol.EVENT_TYPES
    assert 1 <= len(e.id) <= 128 and e.task_id is not None and 1 <= len(e.task_id) <= 128
    assert e.list_id is None or 1 <= len(e.list_id) <= 128
    assert isinstance(e.data, dict)
    if ev.audience is not None:
        assert 1 <= len(ev.audience) <= TLIM.max_recipients
        assert len(set(ev.audience)) == len(ev.audience)
        assert all(USER_ID_RE.fullmatch(u) for u in ev.audience)
    # Whatever was accepted can be sent to clients in both encodings.
    frame = protocol.event_frame(e.type, 1, e.id, e.data)
    encode(frame, "json")
    encode(frame, "msgpack")
