"""Server → client frames (docs/protocol.md), their encoding, and SSE framing. Pure.

An event frame is built and encoded once per event and shared by every connection that writes
it (SharedFrame), whatever its transport.
"""

from __future__ import annotations

import json
from typing import Literal, TypeAlias

import msgpack

from vocab.events import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK
from vocab.filters import FiltersWire
from vocab.json_types import JsonObject

Encoding = Literal["json", "msgpack"]
ServerFrame: TypeAlias = JsonObject


def choose_encoding(offered: list[str]) -> tuple[Encoding, str | None]:
    """Pick the encoding from the client's subprotocol list, honouring the client's order."""
    for p in offered:
        if p == SUBPROTOCOL_MSGPACK:
            return "msgpack", SUBPROTOCOL_MSGPACK
        if p == SUBPROTOCOL_JSON:
            return "json", SUBPROTOCOL_JSON
    return "json", None


def _dumps(frame: ServerFrame) -> str:
    # allow_nan=False: NaN is not JSON and browsers would reject the whole frame.
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class SharedFrame:
    """One event frame shared by every connection of a user that gets it: encoded at most once
    per encoding, however many connections (and transports) write it."""

    __slots__ = ("_cache", "body")

    def __init__(self, body: ServerFrame) -> None:
        self.body = body
        self._cache: dict[str, str | bytes] = {}

    def encoded(self, enc: Encoding) -> str | bytes:
        out = self._cache.get(enc)
        if out is None:
            out = self._cache[enc] = _encode(self.body, enc)
        return out


Frame = ServerFrame | SharedFrame


def _encode(frame: ServerFrame, enc: Encoding) -> str | bytes:
    if enc == "msgpack":
        return msgpack.packb(frame, use_bin_type=True)
    return _dumps(frame)


def encode(frame: Frame, enc: Encoding) -> str | bytes:
    if isinstance(frame, SharedFrame):
        return frame.encoded(enc)
    return _encode(frame, enc)


# A client that connects with `batch=1` may get several event frames in ONE message:
# {"type": "batch", "frames": [<event frame>, ...]} (docs/protocol.md). A 500-event replay is then a
# handful of socket writes, not 500; each inner frame is the frame's own cached encoding.
MAX_BATCH = 256


def is_event(frame: Frame) -> bool:
    b = body(frame)
    return "data" in b and ("seq" in b or "bseq" in b)


def batches(frames: list[Frame]) -> list[list[Frame]]:
    """Split frames, in order, into messages: runs of event frames together (at most MAX_BATCH),
    every other frame alone (a ping or resync_required is never inside a batch)."""
    out: list[list[Frame]] = []
    for f in frames:
        if is_event(f) and out and is_event(out[-1][0]) and len(out[-1]) < MAX_BATCH:
            out[-1].append(f)
        else:
            out.append([f])
    return out


def encode_batch(frames: list[Frame], enc: Encoding) -> str | bytes:
    """One `batch` message holding `frames` (event frames), built from their encodings."""
    parts = [encode(f, enc) for f in frames]
    if enc == "json":
        return '{"type":"batch","frames":[' + ",".join(str(p) for p in parts) + "]}"
    n = len(parts)
    head = (bytes([0x90 | n]) if n < 16 else
            b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xdd" + n.to_bytes(4, "big"))
    return (b"\x82" + msgpack.packb("type") + msgpack.packb("batch") + msgpack.packb("frames")
            + head + b"".join(p for p in parts if isinstance(p, bytes)))


def body(frame: Frame) -> ServerFrame:
    return frame.body if isinstance(frame, SharedFrame) else frame


# -- frames -------------------------------------------------------------------------------------
def welcome(conn_id: str, epoch: str, seq: int, heartbeat: float, resumed: bool,
            broadcast: tuple[str, int] | None = None) -> ServerFrame:
    frame = {"type": "welcome", "conn_id": conn_id, "epoch": epoch, "seq": seq,
             "heartbeat": heartbeat, "resumed": resumed}
    if broadcast is not None:
        frame["bepoch"], frame["bseq"] = broadcast
    return frame


def event_frame(type: str, seq: int, id: str, data: JsonObject) -> ServerFrame:
    return {"type": type, "seq": seq, "id": id, "data": data}


def broadcast_frame(type: str, bseq: int, id: str, data: JsonObject) -> ServerFrame:
    """An event of the shared broadcast stream: `bseq` instead of `seq` (its own sequence)."""
    return {"type": type, "bseq": bseq, "id": id, "data": data}


def resync_required(epoch: str, seq: int, reason: str, broadcast: bool = False
                    ) -> ServerFrame:
    frame = {"type": "resync_required", "epoch": epoch, "seq": seq, "reason": reason}
    if broadcast:
        frame["stream"] = "broadcast"
    return frame


def ping(ts: float) -> ServerFrame:
    return {"type": "ping", "ts": ts}


def pong(ts: float) -> ServerFrame:
    return {"type": "pong", "ts": ts}


def subscribed(filters: FiltersWire | None, scope: str) -> ServerFrame:
    return {"type": "subscribed", "filters": filters, "scope": scope}


def error(code: str, message: str) -> ServerFrame:
    # code is a str, not ErrorCode: SSE also sends close-code names here (see docs).
    return {"type": "error", "code": code, "message": message}

# -- SSE ----------------------------------------------------------------------------------------
def _sse_line_safe(text: str, what: str) -> None:
    # CR or LF would end the field early and let the rest be parsed as new SSE fields.
    if "\n" in text or "\r" in text:
        raise ValueError(f"SSE {what} must not contain CR or LF")


def format_sse(frame: Frame, event_id: str | None) -> str:
    data = encode(frame, "json")  # JSON escapes control characters, so this is one line
    assert isinstance(data, str)
    if event_id is None:
        return f"data: {data}\n\n"
    _sse_line_safe(event_id, "id")
    if not event_id or "\0" in event_id:
        # Browsers ignore ids with NUL and an empty id resets Last-Event-ID: both break resume.
        raise ValueError("SSE id must be non-empty and must not contain NUL")
    return f"id: {event_id}\ndata: {data}\n\n"


def sse_comment(text: str) -> str:
    _sse_line_safe(text, "comment")
    return f": {text}\n\n"
