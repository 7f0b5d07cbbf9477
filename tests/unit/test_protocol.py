"""Unit tests for the client protocol codec in gateway/protocol.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from gateway import protocol
from gateway.protocol import (
    Ack,
    CodecLimits,
    FilterSpec,
    Ping,
    Pong,
    ProtocolError,
    Refresh,
    Subscribe,
    Unsubscribe,
    decode,
    encode,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
LIM = CodecLimits()
ENCODINGS: list[protocol.Encoding] = ["json", "msgpack"]


def wire(obj: Any, enc: protocol.Encoding) -> str | bytes:
    """Client-side encoding of an arbitrary value (not necessarily a valid frame)."""
    return json.dumps(obj) if enc == "json" else msgpack.packb(obj, use_bin_type=True)


def nested(levels: int) -> Any:
    v: Any = 0
    for _ in range(levels):
        v = [v]
    return v


def sub(filters: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"type": "subscribe", "filters": filters, **kw}


# -- decode: accepted frames (both encodings) ---------------------------------------------------
GOOD: list[tuple[str, dict[str, Any], protocol.ClientFrame]] = [
    ("ack", {"type": "ack", "seq": 5}, Ack(5)),
    ("ack-zero", {"type": "ack", "seq": 0}, Ack(0)),
    ("ack-max-int64", {"type": "ack", "seq": 2**63 - 1}, Ack(2**63 - 1)),
    ("ack-unknown-field-ignored", {"type": "ack", "seq": 1, "extra": {"x": [1]}}, Ack(1)),
    ("subscribe-all-lists", sub({"types": ["task_created", "task_deleted"], "task_ids": ["a", 7],
                                 "list_ids": ["l1"]}, scope="user"),
     Subscribe(FilterSpec(("task_created", "task_deleted"), ("a", "7"), ("l1",)), "user")),
    ("subscribe-default-scope", sub({}), Subscribe(FilterSpec(), "connection")),
    ("subscribe-null-lists", sub({"types": None, "task_ids": None}), Subscribe(FilterSpec())),
    ("subscribe-empty-list-matches-nothing", sub({"list_ids": []}),
     Subscribe(FilterSpec(list_ids=()))),
    ("subscribe-dedupes-keeping-order", sub({"task_ids": ["b", "a", "b", 1, "1"]}),
     Subscribe(FilterSpec(task_ids=("b", "a", "1")))),
    ("subscribe-negative-int-id", sub({"task_ids": [-3]}), Subscribe(FilterSpec(task_ids=("-3",)))),
    ("subscribe-256-items-at-limit", sub({"task_ids": [str(i) for i in range(200)],
                                          "list_ids": list(range(56))}),
     Subscribe(FilterSpec(task_ids=tuple(str(i) for i in range(200)),
                          list_ids=tuple(str(i) for i in range(56))))),
    ("subscribe-emoji-rtl-nul-ids", sub({"task_ids": ["\U0001f600", "\u202eabc", "a\x00b"]}),
     Subscribe(FilterSpec(task_ids=("\U0001f600", "\u202eabc", "a\x00b")))),
    ("unsubscribe-user", {"type": "unsubscribe", "scope": "user"}, Unsubscribe("user")),
    ("unsubscribe-default-scope", {"type": "unsubscribe"}, Unsubscribe("connection")),
    ("ping-float-ts", {"type": "ping", "ts": 1.5}, Ping(1.5)),
    ("ping-int-ts", {"type": "ping", "ts": 2}, Ping(2.0)),
    ("ping-null-ts", {"type": "ping", "ts": None}, Ping(None)),
    ("ping-no-ts", {"type": "ping"}, Ping(None)),
    ("pong", {"type": "pong", "ts": 3.25}, Pong(3.25)),
    ("refresh", {"type": "refresh", "token": "a.b.c"}, Refresh("a.b.c")),
    ("refresh-8192-token", {"type": "refresh", "token": "t" * 8192}, Refresh("t" * 8192)),
    ("refresh-emoji-token", {"type": "refresh", "token": "\U0001f511"}, Refresh("\U0001f511")),
    ("depth-at-limit", {"type": "ack", "seq": 1, "x": nested(7)}, Ack(1)),
]


@pytest.mark.parametrize("enc", ENCODINGS)
@pytest.mark.parametrize(("obj", "expected"), [g[1:] for g in GOOD], ids=[g[0] for g in GOOD])
def test_decode_accepts(obj: dict[str, Any], expected: protocol.ClientFrame,
                        enc: protocol.Encoding) -> None:
    assert decode(wire(obj, enc), enc, LIM) == expected


# -- decode: refused frames ---------------------------------------------------------------------
BIG = CodecLimits(max_frame_bytes=1_000_000)
DEEP_JSON = '{"type":"ack","seq":1,"x":' + "[" * 10_000 + "]" * 10_000 + "}"
# fixmap{type: ack, seq: 1, x: 10_000 nested one-element arrays}
DEEP_MSGPACK = b"\x83\xa4type\xa3ack\xa3seq\x01\xa1x" + b"\x91" * 10_000 + b"\xc0"

Bad = tuple[str, str | bytes, protocol.Encoding, str, CodecLimits]
BAD: list[Bad] = [
    # size is checked first
    ("huge-text", "x" * 20_000, "json", "frame_too_large", LIM),
    ("huge-binary", b"\x00" * 20_000, "msgpack", "frame_too_large", LIM),
    ("huge-by-utf8-bytes-not-chars", json.dumps({"type": "ping", "x": "\u00e9" * 9000},
                                                ensure_ascii=False),
     "json", "frame_too_large", LIM),
    ("huge-text-on-msgpack-conn", "x" * 20_000, "msgpack", "frame_too_large", LIM),
    ("deep-json-10000-default-limits", DEEP_JSON, "json", "frame_too_large", LIM),
    # parse
    ("deep-json-10000", DEEP_JSON, "json", "bad_frame", BIG),
    ("deep-json-10000-top-level-array", "[" * 10_000 + "]" * 10_000, "json", "bad_frame", BIG),
    ("deep-msgpack-10000", DEEP_MSGPACK, "msgpack", "bad_frame", BIG),
    ("depth-over-limit-json", json.dumps({"type": "ack", "seq": 1, "x": nested(8)}), "json",
     "bad_frame", LIM),
    ("depth-over-limit-msgpack", wire({"type": "ack", "seq": 1, "x": nested(8)}, "msgpack"),
     "msgpack", "bad_frame", LIM),
    ("malformed-json", '{"type": "ack", ', "json", "bad_frame", LIM),
    ("json-trailing-garbage", '{"type":"ack","seq":1} x', "json", "bad_frame", LIM),
    ("empty-text", "", "json", "bad_frame", LIM),
    ("empty-binary", b"", "msgpack", "bad_frame", LIM),
    ("binary-junk", b"\xc1\xff\x00\x13", "msgpack", "bad_frame", LIM),
    ("msgpack-truncated", wire({"type": "ack", "seq": 1}, "msgpack")[:-1], "msgpack",
     "bad_frame", LIM),
    ("msgpack-extra-data", wire({"type": "ack", "seq": 1}, "msgpack") + b"\x00", "msgpack",
     "bad_frame", LIM),
    ("text-frame-on-msgpack-conn", '{"type":"ack","seq":1}', "msgpack", "bad_frame", LIM),
    ("binary-frame-on-json-conn", b'{"type":"ack","seq":1}', "json", "bad_frame", LIM),
    ("json-duplicate-key", '{"type":"ack","seq":1,"seq":2}', "json", "bad_frame", LIM),
    ("msgpack-duplicate-key", b"\x83\xa4type\xa3ack\xa3seq\x01\xa3seq\x02", "msgpack",
     "bad_frame", LIM),
    ("msgpack-int-key", wire({"type": "ack", "seq": 1, 7: 1}, "msgpack"), "msgpack",
     "bad_frame", LIM),
    ("msgpack-bin-key", wire({b"type": "ack"}, "msgpack"), "msgpack", "bad_frame", LIM),
    ("msgpack-bytes-value", wire({"type": "refresh", "token": b"abc"}, "msgpack"), "msgpack",
     "bad_frame", LIM),
    ("msgpack-ext-type", wire({"type": "ack", "seq": 1, "x": msgpack.ExtType(5, b"a")},
                              "msgpack"), "msgpack", "bad_frame", LIM),
    ("msgpack-timestamp", wire({"type": "ping", "ts": msgpack.Timestamp(1, 0)}, "msgpack"),
     "msgpack", "bad_frame", LIM),
    ("msgpack-invalid-utf8", b"\x82\xa4type\xa7refresh\xa5token\xa2\xff\xfe", "msgpack",
     "bad_frame", LIM),
    ("json-lone-surrogate-escape", '{"type":"refresh","token":"\\ud800"}', "json", "bad_frame",
     LIM),
    ("json-raw-lone-surrogate", '{"type":"refresh","token":"\ud800"}', "json", "bad_frame", LIM),
    ("json-top-level-array", "[1, 2]", "json", "bad_frame", LIM),
    ("json-top-level-null", "null", "json", "bad_frame", LIM),
    ("msgpack-top-level-int", b"\x01", "msgpack", "bad_frame", LIM),
    # type
    ("type-missing", '{"seq":1}', "json", "unknown_type", LIM),
    ("type-unknown", '{"type":"task_created"}', "json", "unknown_type", LIM),
    ("type-not-string", '{"type":5}', "json", "unknown_type", LIM),
    ("type-null", '{"type":null}', "json", "unknown_type", LIM),
    ("type-wrong-case", '{"type":"ACK","seq":1}', "json", "unknown_type", LIM),
    # fields
    ("seq-missing", '{"type":"ack"}', "json", "bad_field", LIM),
    ("seq-string", '{"type":"ack","seq":"1"}', "json", "bad_field", LIM),
    ("seq-bool", '{"type":"ack","seq":true}', "json", "bad_field", LIM),
    ("seq-bool-msgpack", wire({"type": "ack", "seq": True}, "msgpack"), "msgpack", "bad_field",
     LIM),
    ("seq-negative", '{"type":"ack","seq":-1}', "json", "bad_field", LIM),
    ("seq-float", '{"type":"ack","seq":1.0}', "json", "bad_field", LIM),
    ("seq-above-int64", wire({"type": "ack", "seq": 2**63}, "msgpack"), "msgpack", "bad_field",
     LIM),
    ("seq-4000-digits", '{"type":"ack","seq":' + "9" * 4000 + "}", "json", "bad_field", LIM),
    ("ts-string", '{"type":"ping","ts":"1"}', "json", "bad_field", LIM),
    ("ts-bool", '{"type":"pong","ts":false}', "json", "bad_field", LIM),
    ("ts-nan-literal", '{"type":"ping","ts":NaN}', "json", "bad_field", LIM),
    ("ts-overflows-to-inf", '{"type":"ping","ts":1e999}', "json", "bad_field", LIM),
    ("ts-nan-msgpack", wire({"type": "ping", "ts": float("nan")}, "msgpack"), "msgpack",
     "bad_field", LIM),
    ("ts-huge-int", '{"type":"ping","ts":' + "9" * 400 + "}", "json", "bad_field", LIM),
    ("token-missing", '{"type":"refresh"}', "json", "bad_field", LIM),
    ("token-empty", '{"type":"refresh","token":""}', "json", "bad_field", LIM),
    ("token-too-long", json.dumps({"type": "refresh", "token": "t" * 8193}), "json",
     "bad_field", LIM),
    ("token-int", '{"type":"refresh","token":1}', "json", "bad_field", LIM),
    ("string-above-max-string", json.dumps({"type": "ack", "seq": 1, "x": "s" * 1025}), "json",
     "bad_field", LIM),
    ("scope-unknown", '{"type":"unsubscribe","scope":"all"}', "json", "bad_field", LIM),
    ("scope-null", '{"type":"unsubscribe","scope":null}', "json", "bad_field", LIM),
    ("filters-missing", '{"type":"subscribe"}', "json", "bad_field", LIM),
    ("filters-not-object", '{"type":"subscribe","filters":[]}', "json", "bad_field", LIM),
    ("filters-unknown-key", json.dumps(sub({"typez": ["task_created"]})), "json", "bad_field",
     LIM),
    ("filters-types-not-list", json.dumps(sub({"types": "task_created"})), "json", "bad_field",
     LIM),
    ("filters-type-unknown", json.dumps(sub({"types": ["task_exploded"]})), "json", "bad_field",
     LIM),
    ("filters-type-not-string", json.dumps(sub({"types": [1]})), "json", "bad_field", LIM),
    ("filters-id-bool", json.dumps(sub({"task_ids": [True]})), "json", "bad_field", LIM),
    ("filters-id-empty", json.dumps(sub({"task_ids": [""]})), "json", "bad_field", LIM),
    ("filters-id-129-chars", json.dumps(sub({"list_ids": ["x" * 129]})), "json", "bad_field",
     LIM),
    ("filters-id-float", json.dumps(sub({"task_ids": [1.5]})), "json", "bad_field", LIM),
    ("filters-id-null", json.dumps(sub({"task_ids": [None]})), "json", "bad_field", LIM),
    ("filters-id-list", json.dumps(sub({"task_ids": [[1]]})), "json", "bad_field", LIM),
    ("filters-257-items", json.dumps(sub({"task_ids": list(range(200)),
                                          "list_ids": list(range(57))})),
     "json", "filter_too_large", LIM),
    ("filters-too-many-beats-bad-items", json.dumps(sub({"types": ["?"] * 300})), "json",
     "filter_too_large", LIM),
]


@pytest.mark.parametrize(("raw", "enc", "code", "limits"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_decode_refuses(raw: str | bytes, enc: protocol.Encoding, code: str,
                        limits: CodecLimits) -> None:
    with pytest.raises(ProtocolError) as ei:
        decode(raw, enc, limits)
    assert ei.value.code == code
    assert ei.value.message
    assert ei.value.code in protocol.ERROR_CODES


def test_smaller_filter_limit_is_honoured() -> None:
    with pytest.raises(ProtocolError) as ei:
        decode(json.dumps(sub({"types": ["task_created"] * 3})), "json",
               CodecLimits(max_filter_items=2))
    assert ei.value.code == "filter_too_large"


# -- encode / round trip ------------------------------------------------------------------------
@pytest.mark.parametrize("enc", ENCODINGS)
@pytest.mark.parametrize("frame", [g[2] for g in GOOD], ids=[g[0] for g in GOOD])
def test_round_trip(frame: protocol.ClientFrame, enc: protocol.Encoding) -> None:
    assert decode(encode(protocol.to_wire(frame), enc), enc, LIM) == frame


def test_encode_json_is_compact_and_keeps_unicode() -> None:
    out = encode({"a": "\u00e9\U0001f600", "b": [1, 2]}, "json")
    assert out == '{"a":"\u00e9\U0001f600","b":[1,2]}'


def test_encode_msgpack_uses_bin_type() -> None:
    out = encode({"s": "x", "b": b"\x00"}, "msgpack")
    assert isinstance(out, bytes)
    assert msgpack.unpackb(out, raw=False) == {"s": "x", "b": b"\x00"}


def test_encode_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        encode({"ts": float("nan")}, "json")


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ([], ("json", None)),
        (["chat"], ("json", None)),
        ([protocol.SUBPROTOCOL_JSON], ("json", "tasksync.json.v1")),
        ([protocol.SUBPROTOCOL_MSGPACK], ("msgpack", "tasksync.msgpack.v1")),
        (["chat", protocol.SUBPROTOCOL_MSGPACK, protocol.SUBPROTOCOL_JSON],
         ("msgpack", "tasksync.msgpack.v1")),
        ([protocol.SUBPROTOCOL_JSON, protocol.SUBPROTOCOL_MSGPACK], ("json", "tasksync.json.v1")),
    ],
    ids=["none", "foreign", "json", "msgpack", "msgpack-first", "json-first"],
)
def test_choose_encoding(offered: list[str], expected: tuple[str, str | None]) -> None:
    assert protocol.choose_encoding(offered) == expected


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (protocol.welcome("c1", "e1", 7, 25.0, True),
         {"type": "welcome", "conn_id": "c1", "epoch": "e1", "seq": 7, "heartbeat": 25.0,
          "resumed": True}),
        (protocol.event_frame("task_created", 3, "ev1", {"id": 1}),
         {"type": "task_created", "seq": 3, "id": "ev1", "data": {"id": 1}}),
        (protocol.resync_required("e2", 9, "epoch_changed"),
         {"type": "resync_required", "epoch": "e2", "seq": 9, "reason": "epoch_changed"}),
        (protocol.ping(1.0), {"type": "ping", "ts": 1.0}),
        (protocol.pong(2.0), {"type": "pong", "ts": 2.0}),
        (protocol.subscribed(None, "user"), {"type": "subscribed", "filters": None,
                                             "scope": "user"}),
        (protocol.error("bad_field", "no"), {"type": "error", "code": "bad_field",
                                             "message": "no"}),
    ],
    ids=["welcome", "event", "resync_required", "ping", "pong", "subscribed", "error"],
)
def test_server_frames(frame: dict[str, Any], expected: dict[str, Any]) -> None:
    assert frame == expected


def test_filter_spec_to_wire() -> None:
    spec = FilterSpec(types=("task_created",), task_ids=None, list_ids=())
    assert spec.to_wire() == {"types": ["task_created"], "task_ids": None, "list_ids": []}


# -- docs stay true -----------------------------------------------------------------------------
def doc_table(section: str) -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("|")]
    return [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows[2:]]


def yes_no(cell: str) -> bool:
    assert cell in ("yes", "no", "\u2013"), cell
    return cell == "yes"


def test_close_codes_match_docs() -> None:
    documented = {
        int(code): protocol.CloseCode(int(code), name, yes_no(rec), yes_no(res), action)
        for code, name, rec, res, action in doc_table("Close codes")
    }
    assert documented == protocol.CLOSE_CODES


def test_close_code_constants_are_the_catalogue() -> None:
    for c in protocol.CLOSE_CODES.values():
        assert getattr(protocol, c.name.upper()) is c


def test_error_codes_match_docs() -> None:
    assert {row[0].strip("`") for row in doc_table("Error codes (in `error` frames)")} == (
        protocol.ERROR_CODES
    )


# -- SSE ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "event_id", "expected"),
    [
        ({"type": "ping", "ts": 1}, None, 'data: {"type":"ping","ts":1}\n\n'),
        ({"type": "x"}, "e1:42", 'id: e1:42\ndata: {"type":"x"}\n\n'),
        ({"m": "a\nb\r\u2028\u00e9"}, "e:1", 'id: e:1\ndata: {"m":"a\\nb\\r\u2028\u00e9"}\n\n'),
    ],
    ids=["no-id", "with-id", "newlines-in-data-escaped"],
)
def test_format_sse(frame: dict[str, Any], event_id: str | None, expected: str) -> None:
    assert protocol.format_sse(frame, event_id) == expected


@pytest.mark.parametrize("event_id", ["a\nb", "a\rb", "a\r\nb", "", "a\x00b"],
                         ids=["lf", "cr", "crlf", "empty", "nul"])
def test_format_sse_refuses_bad_ids(event_id: str) -> None:
    with pytest.raises(ValueError):
        protocol.format_sse({"type": "x"}, event_id)


def test_sse_comment() -> None:
    assert protocol.sse_comment("ping 5") == ": ping 5\n\n"
    with pytest.raises(ValueError):
        protocol.sse_comment("a\ndata: forged")
