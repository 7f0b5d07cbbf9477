"""Client protocol codec and close-code catalogue (docs/protocol.md is the contract).

Pure: no I/O, no clock. Every client frame is untrusted, so decoding is bounded in size, depth
and string length before any field is looked at, and only ProtocolError ever escapes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal, NoReturn, get_args

import msgpack

# Server frames, their shared encoding and SSE framing live in gateway/server_frames.py; they are
# re-exported so callers keep one name for the protocol (protocol.welcome, protocol.encode ...).
from gateway.server_frames import MAX_BATCH as MAX_BATCH
from gateway.server_frames import Encoding as Encoding
from gateway.server_frames import Frame as Frame
from gateway.server_frames import ServerFrame as ServerFrame
from gateway.server_frames import SharedFrame as SharedFrame
from gateway.server_frames import batches as batches
from gateway.server_frames import body as body
from gateway.server_frames import broadcast_frame as broadcast_frame
from gateway.server_frames import choose_encoding as choose_encoding
from gateway.server_frames import encode as encode
from gateway.server_frames import encode_batch as encode_batch
from gateway.server_frames import error as error
from gateway.server_frames import event_frame as event_frame
from gateway.server_frames import format_sse as format_sse
from gateway.server_frames import is_event as is_event
from gateway.server_frames import ping as ping
from gateway.server_frames import pong as pong
from gateway.server_frames import resync_required as resync_required
from gateway.server_frames import sse_comment as sse_comment
from gateway.server_frames import subscribed as subscribed
from gateway.server_frames import welcome as welcome

# The close-code catalogue and event types are the shared vocabulary's (re-exported here).
from vocab.closecodes import CLOSE_CODES as CLOSE_CODES
from vocab.closecodes import FORBIDDEN_ORIGIN as FORBIDDEN_ORIGIN
from vocab.closecodes import FRAME_TOO_LARGE as FRAME_TOO_LARGE
from vocab.closecodes import HANDSHAKE_TIMEOUT as HANDSHAKE_TIMEOUT
from vocab.closecodes import HEARTBEAT_TIMEOUT as HEARTBEAT_TIMEOUT
from vocab.closecodes import INTERNAL_ERROR as INTERNAL_ERROR
from vocab.closecodes import NORMAL as NORMAL
from vocab.closecodes import PROTOCOL_ERROR as PROTOCOL_ERROR
from vocab.closecodes import RATE_LIMITED as RATE_LIMITED
from vocab.closecodes import SERVER_SHUTDOWN as SERVER_SHUTDOWN
from vocab.closecodes import SLOW_CONSUMER as SLOW_CONSUMER
from vocab.closecodes import TOKEN_EXPIRED as TOKEN_EXPIRED
from vocab.closecodes import TOO_MANY_CONNECTIONS as TOO_MANY_CONNECTIONS
from vocab.closecodes import UNAUTHORIZED as UNAUTHORIZED
from vocab.closecodes import UNAVAILABLE as UNAVAILABLE
from vocab.closecodes import CloseCode as CloseCode
from vocab.events import EVENT_TYPES as EVENT_TYPES
from vocab.events import SUBPROTOCOL_JSON as SUBPROTOCOL_JSON
from vocab.events import SUBPROTOCOL_MSGPACK as SUBPROTOCOL_MSGPACK
from vocab.json_types import JsonObject, WireMap

Scope = Literal["connection", "user"]
ErrorCode = Literal[
    "bad_frame", "unknown_type", "bad_field", "frame_too_large", "rate_limited",
    "filter_too_large", "bad_token", "unavailable",
]


ERROR_CODES: frozenset[str] = frozenset(get_args(ErrorCode))
SCOPES: frozenset[str] = frozenset({"connection", "user"})
MAX_TOKEN = 8192
MAX_FILTER_ID = 128
MAX_SEQ = 2**63 - 1  # seqs are int64 everywhere else; bigger is a client bug, not a position


# -- errors -------------------------------------------------------------------------------------
class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = message


def _fail(code: ErrorCode, message: str) -> NoReturn:
    raise ProtocolError(code, message)


# -- client frames ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CodecLimits:
    max_frame_bytes: int = 16384
    max_depth: int = 8
    max_filter_items: int = 256
    max_string: int = 1024


@dataclass(frozen=True)
class FilterSpec:
    """None in a dimension means "any"; an empty tuple matches nothing."""

    types: tuple[str, ...] | None = None
    task_ids: tuple[str, ...] | None = None
    list_ids: tuple[str, ...] | None = None

    def to_wire(self) -> JsonObject:
        def lst(v: tuple[str, ...] | None) -> list[str] | None:
            return list(v) if v is not None else None

        return {"types": lst(self.types), "task_ids": lst(self.task_ids),
                "list_ids": lst(self.list_ids)}


@dataclass(frozen=True)
class Ack:
    seq: int


@dataclass(frozen=True)
class Subscribe:
    filters: FilterSpec
    scope: Scope = "connection"


@dataclass(frozen=True)
class Unsubscribe:
    scope: Scope = "connection"


@dataclass(frozen=True)
class Ping:
    ts: float | None = None


@dataclass(frozen=True)
class Pong:
    ts: float | None = None


@dataclass(frozen=True)
class Refresh:
    token: str


ClientFrame = Ack | Subscribe | Unsubscribe | Ping | Pong | Refresh


def to_wire(frame: ClientFrame) -> JsonObject:
    """The wire dict of a client frame (what a client sends); decode() inverts it."""
    if isinstance(frame, Ack):
        return {"type": "ack", "seq": frame.seq}
    if isinstance(frame, Subscribe):
        wire = {k: v for k, v in frame.filters.to_wire().items() if v is not None}
        return {"type": "subscribe", "filters": wire, "scope": frame.scope}
    if isinstance(frame, Unsubscribe):
        return {"type": "unsubscribe", "scope": frame.scope}
    if isinstance(frame, Refresh):
        return {"type": "refresh", "token": frame.token}
    name = "ping" if isinstance(frame, Ping) else "pong"
    return {"type": name} if frame.ts is None else {"type": name, "ts": frame.ts}


def decode(raw: str | bytes, enc: Encoding, limits: CodecLimits) -> ClientFrame:
    _check_size(raw, limits.max_frame_bytes)
    obj = _parse_json(raw) if enc == "json" else _parse_msgpack(raw, limits)
    if not isinstance(obj, dict):
        _fail("bad_frame", "frame must be an object")
    return decode_object(obj, limits)


def decode_object(obj: WireMap, limits: CodecLimits) -> ClientFrame:
    """An already parsed frame (SSE POST bodies, whose type comes from the URL)."""
    _check_tree(obj, limits)
    return _frame(obj, limits)


def _check_size(raw: str | bytes, limit: int) -> None:
    n = len(raw)
    if isinstance(raw, str) and n <= limit:
        # surrogatepass: measure even unencodable text; it is refused later as bad_frame.
        n = len(raw.encode("utf-8", "surrogatepass"))
    if n > limit:
        _fail("frame_too_large", f"frame is {n} bytes, limit {limit}")


def _unique_keys(pairs: list[tuple[object, object]]) -> dict[str, object]:
    # Duplicate keys would let two parsers see two different frames; refuse the ambiguity.
    out: dict[str, object] = {}
    for k, v in pairs:
        if not isinstance(k, str):
            _fail("bad_frame", "map keys must be strings")
        if k in out:
            _fail("bad_frame", f"duplicate key {k[:64]!r}")
        out[k] = v
    return out


def _parse_json(raw: str | bytes) -> object:
    if not isinstance(raw, str):
        _fail("bad_frame", "binary frame on a JSON connection")
    try:
        return json.loads(raw, object_pairs_hook=_unique_keys)
    except RecursionError:
        # The C scanner recurses per nesting level; deep input hits the interpreter limit.
        _fail("bad_frame", "nesting too deep")
    except ValueError as e:
        _fail("bad_frame", f"invalid JSON: {str(e)[:100]}")


def _reject_ext(code: int, data: bytes) -> NoReturn:
    _fail("bad_frame", f"msgpack extension type {code} not allowed")


def _parse_msgpack(raw: str | bytes, limits: CodecLimits) -> object:
    if isinstance(raw, str):
        _fail("bad_frame", "text frame on a msgpack connection")
    # unpackb has no max_buffer_size (only Unpacker does); the input size is already checked,
    # and these caps stop a tiny header from announcing a huge container.
    n = limits.max_frame_bytes
    try:
        return msgpack.unpackb(
            raw, raw=False, strict_map_key=True, object_pairs_hook=_unique_keys,
            ext_hook=_reject_ext, max_str_len=n, max_bin_len=n, max_ext_len=n,
            max_array_len=n, max_map_len=n // 2,
        )
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as e:
        # ValueError covers FormatError, StackError (too deep), ExtraData, bad UTF-8, truncation.
        _fail("bad_frame", f"invalid msgpack: {type(e).__name__}")


def _check_tree(root: WireMap, limits: CodecLimits) -> None:
    """Iterative walk: bounded depth, JSON-like types only, bounded UTF-8-clean strings."""
    stack: list[tuple[object, int, bool]] = [(root, 1, False)]
    while stack:
        v, depth, is_token = stack.pop()
        if isinstance(v, str):
            if len(v) > (MAX_TOKEN if is_token else limits.max_string):
                _fail("bad_field", "string too long")
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                # Lone surrogates parse from JSON escapes but cannot be re-sent as UTF-8.
                _fail("bad_frame", "string is not valid Unicode")
        elif isinstance(v, dict | list):
            if depth > limits.max_depth:
                _fail("bad_frame", f"nesting deeper than {limits.max_depth}")
            if isinstance(v, dict):
                for k, item in v.items():
                    stack.append((k, depth, False))
                    stack.append((item, depth + 1, v is root and k == "token"))
            else:
                stack.extend((item, depth + 1, False) for item in v)
        elif v is not None and not isinstance(v, bool | int | float):
            # bytes, ExtType, Timestamp: valid msgpack, but not part of the protocol's data model.
            _fail("bad_frame", f"unsupported value type {type(v).__name__}")


def _scope(obj: WireMap) -> Scope:
    s = obj.get("scope", "connection")
    if s == "connection":
        return "connection"
    if s == "user":
        return "user"
    _fail("bad_field", "scope must be 'connection' or 'user'")


def _ts(obj: WireMap) -> float | None:
    ts = obj.get("ts")
    if ts is None:
        return None
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        try:
            f = float(ts)
        except OverflowError:
            f = math.inf
        if math.isfinite(f):
            return f
    _fail("bad_field", "ts must be a finite number")


def _filter_id(v: object, field: str) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 10**MAX_FILTER_ID:
        v = str(v)
    if isinstance(v, str) and 1 <= len(v) <= MAX_FILTER_ID:
        return v
    _fail("bad_field", f"{field} items must be strings or integers of 1..{MAX_FILTER_ID} chars")


def _filters(raw: object, limits: CodecLimits) -> FilterSpec:
    if not isinstance(raw, dict):
        _fail("bad_field", "filters must be an object")
    unknown = set(raw) - {"types", "task_ids", "list_ids"}
    if unknown:
        # A misspelt dimension would silently mean "any" and widen the subscription.
        _fail("bad_field", f"unknown filter key {sorted(unknown)[0][:64]!r}")
    lists: dict[str, list[object] | None] = {}
    for key in ("types", "task_ids", "list_ids"):
        v = raw.get(key)
        if v is not None and not isinstance(v, list):
            _fail("bad_field", f"filters.{key} must be a list")
        lists[key] = v
    total = sum(len(v) for v in lists.values() if v is not None)
    if total > limits.max_filter_items:
        _fail("filter_too_large", f"{total} filter items, limit {limits.max_filter_items}")

    def norm(key: str) -> tuple[str, ...] | None:
        items = lists[key]
        if items is None:
            return None
        if key == "types":
            types = [t for t in items if isinstance(t, str) and t in EVENT_TYPES]
            if len(types) != len(items):
                _fail("bad_field", "filters.types items must be event types")
            return tuple(dict.fromkeys(types))
        return tuple(dict.fromkeys(_filter_id(v, f"filters.{key}") for v in items))

    return FilterSpec(types=norm("types"), task_ids=norm("task_ids"), list_ids=norm("list_ids"))


def _frame(obj: WireMap, limits: CodecLimits) -> ClientFrame:
    # Unknown top-level fields are ignored (already bounded by _check_tree) so that newer
    # clients can add optional fields without breaking older servers.
    t = obj.get("type")
    if t == "ack":
        seq = obj.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= MAX_SEQ:
            return Ack(seq)
        _fail("bad_field", "seq must be a non-negative integer")
    if t == "subscribe":
        if "filters" not in obj:
            _fail("bad_field", "filters is required")
        return Subscribe(_filters(obj["filters"], limits), _scope(obj))
    if t == "unsubscribe":
        return Unsubscribe(_scope(obj))
    if t == "ping":
        return Ping(_ts(obj))
    if t == "pong":
        return Pong(_ts(obj))
    if t == "refresh":
        token = obj.get("token")
        if isinstance(token, str) and 1 <= len(token) <= MAX_TOKEN:
            return Refresh(token)
        _fail("bad_field", f"token must be a string of 1..{MAX_TOKEN} chars")
    _fail("unknown_type", "type missing or not a client frame type")
