"""Hostile client frames the codec tables in test_protocol.py don't already cover.

test_protocol.py has the big accept/refuse tables (size, depth, malformed JSON/msgpack, duplicate
keys, lone surrogates in a token, field types) and test_fuzz_codec.py fuzzes arbitrary input. This
adds what was missing: encoding tricks (BOM, UTF-16, raw control characters), look-alike and
invisible Unicode in enum fields, msgpack headers announcing huge containers, CPython's integer
digit limit, and the authorization property that no frame can carry a user id."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import protocol
from gateway.protocol import CodecLimits, ProtocolError, decode

LIM = CodecLimits()

Refused = tuple[str, str | bytes, protocol.Encoding, str]
REFUSED: list[Refused] = [
    # encoding tricks
    ("utf8-bom-prefix", '\ufeff{"type":"ping"}', "json", "bad_frame"),
    ("utf16-bytes-on-json-conn", '{"type":"ping"}'.encode("utf-16"), "json", "bad_frame"),
    ("raw-nul-in-string", '{"type":"refresh","token":"a\x00b"}', "json", "bad_frame"),
    ("raw-newline-in-string", '{"type":"refresh","token":"a\nb"}', "json", "bad_frame"),
    ("whitespace-only", " \t\r\n ", "json", "bad_frame"),
    ("lone-low-surrogate-in-filter-id",
     '{"type":"subscribe","filters":{"task_ids":["\\udc00"]}}', "json", "bad_frame"),
    ("lone-surrogate-in-ignored-field", '{"type":"ping","x":"\\ud83d"}', "json", "bad_frame"),
    ("lone-surrogate-in-key", '{"type":"ping","\\ud800":1}', "json", "bad_frame"),
    # look-alikes and invisible characters never match an enum value
    ("type-rtl-override", '{"type":"\u202eack","seq":1}', "json", "unknown_type"),
    ("type-escaped-nul-suffix", '{"type":"ack\\u0000","seq":1}', "json", "unknown_type"),
    ("type-fullwidth-letter", '{"type":"\uff41ck","seq":1}', "json", "unknown_type"),
    ("type-zero-width-space", '{"type":"ack\u200b","seq":1}', "json", "unknown_type"),
    ("type-cyrillic-a", '{"type":"\u0430ck","seq":1}', "json", "unknown_type"),
    ("scope-rtl-override", '{"type":"unsubscribe","scope":"user\u202e"}', "json", "bad_field"),
    ("filter-key-escaped-nul", '{"type":"subscribe","filters":{"types\\u0000":[]}}', "json",
     "bad_field"),
    ("filter-type-homoglyph", '{"type":"subscribe","filters":{"types":["task_cr\u0435ated"]}}',
     "json", "bad_field"),
    # numbers
    ("seq-5000-digits", '{"type":"ack","seq":' + "9" * 5000 + "}", "json", "bad_frame"),
    ("seq-exponent", '{"type":"ack","seq":1e3}', "json", "bad_field"),
    ("seq-uint64-max-msgpack", msgpack.packb({"type": "ack", "seq": 2**64 - 1}), "msgpack",
     "bad_field"),
    ("seq-int64-min-msgpack", msgpack.packb({"type": "ack", "seq": -(2**63)}), "msgpack",
     "bad_field"),
    ("seq-nan-msgpack", msgpack.packb({"type": "ack", "seq": float("nan")}), "msgpack",
     "bad_field"),
    # msgpack headers that announce huge containers in a few bytes
    ("msgpack-map32-announces-4g-entries", b"\xdf\xff\xff\xff\xff", "msgpack", "bad_frame"),
    ("msgpack-array32-announces-4g-items", b"\x81\xa4type\xdd\xff\xff\xff\xff", "msgpack",
     "bad_frame"),
    ("msgpack-str32-announces-4g-bytes", b"\x81\xa4type\xdb\xff\xff\xff\xff", "msgpack",
     "bad_frame"),
    ("msgpack-bin32-announces-4g-bytes", b"\x81\xa4type\xc6\xff\xff\xff\xff", "msgpack",
     "bad_frame"),
    ("msgpack-fixext", b"\x82\xa4type\xa4ping\xa2ts\xd4\x01\x00", "msgpack", "bad_frame"),
    ("msgpack-top-level-nil", b"\xc0", "msgpack", "bad_frame"),
]


@pytest.mark.parametrize(("raw", "enc", "code"), [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_hostile_frame_refused(raw: str | bytes, enc: protocol.Encoding, code: str) -> None:
    with pytest.raises(ProtocolError) as ei:
        decode(raw, enc, LIM)
    assert ei.value.code == code


# -- authorization: no frame can name a user ---------------------------------------------------
IDENTITY_FIELDS = {"user": "victim", "sub": "victim", "user_id": "victim", "uid": "victim",
                   "conn_id": "gw-a.victim", "__proto__": {"user": "victim"}}
FRAMES = [
    {"type": "ack", "seq": 3},
    {"type": "subscribe", "filters": {"types": ["task_created"]}, "scope": "user"},
    {"type": "unsubscribe", "scope": "user"},
    {"type": "ping"},
    {"type": "pong"},
    {"type": "refresh", "token": "a.b.c"},
]


@pytest.mark.parametrize("enc", ["json", "msgpack"])
@pytest.mark.parametrize("frame", FRAMES, ids=[f["type"] for f in FRAMES])
def test_identity_fields_are_ignored(frame: dict[str, Any], enc: protocol.Encoding) -> None:
    """The user is the token's `sub`, held by the connection: extra fields naming a user decode
    to exactly the frame without them, and no client frame type has a field for one."""
    hostile = {**frame, **IDENTITY_FIELDS}
    raw = json.dumps(hostile) if enc == "json" else msgpack.packb(hostile)
    clean = json.dumps(frame) if enc == "json" else msgpack.packb(frame)
    decoded = decode(raw, enc, LIM)
    assert decoded == decode(clean, enc, LIM)
    names = {f.name for f in dataclasses.fields(decoded)}  # type: ignore[arg-type]
    assert not names & {"user", "sub", "user_id", "uid", "conn_id"}


# -- lone surrogates anywhere ------------------------------------------------------------------
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# One surrogate code point: a high+low pair would decode to a valid astral character.
surrogate_text = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_text = st.text(max_size=10)  # hypothesis' default alphabet has no surrogates


@FUZZ
@given(
    st.sampled_from(["ack", "subscribe", "unsubscribe", "ping", "refresh"]),
    st.sampled_from(["token", "scope", "extra", "key", "filter_id"]),
    any_text, surrogate_text, any_text,
)
def test_lone_surrogate_anywhere_is_bad_frame(ftype: str, where: str, pre: str, sur: str,
                                              post: str) -> None:
    """json.dumps escapes a lone surrogate as \\udXXX: valid JSON that Python parses into a str
    that can't be encoded as UTF-8. Wherever it sits, the frame is refused before use (it could
    never be echoed back to a browser)."""
    s = pre + sur + post
    frame: dict[str, Any] = {"type": ftype, "seq": 1, "token": "t", "filters": {}}
    if where == "key":
        frame[s] = 1
    elif where == "filter_id":
        frame["filters"] = {"task_ids": [s]}
    else:
        frame[where] = s
    with pytest.raises(ProtocolError) as ei:
        decode(json.dumps(frame), "json", LIM)
    assert ei.value.code == "bad_frame"
