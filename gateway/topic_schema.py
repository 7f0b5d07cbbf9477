"""Validation of `task-updates` topic messages and who should receive them.

A message is the CloudEvent envelope Dapr posts to the subscriber; its `data` is the publisher's
payload (an object, or the same object as a JSON string):

    {"type": "task_updated", "data": {"id": 123, "title": "Updated Task", "completed": true}}

Optional top-level payload keys: `event_id`, `audience` (user ids), `ts`, `version`. Any other
top-level key is refused; keys inside `data` are the task's own and pass through untouched.

`version` (the task's version, an int 1..2**63-1 the producer increments on every change of the
task) turns on per-task ordering in the UserSession actor (actors/task_order.py): anything else
(bool, float, string, 0, negative) is refused as `bad_version`. It is a top-level key, next to
`event_id`, because it is delivery metadata the sync service interprets, not task content: the
service never interprets `data` beyond ids and audience, and a producer's own `data.version` (an
etag, a string) keeps passing through untouched. Without it there is no ordering.

Event id (the dedupe key): the payload's `event_id` if set, else the CloudEvent `id`. Dapr keeps
the CloudEvent id on redelivery, but every publish call gets a new one, so a publisher that may
publish the same change twice (retries, outbox replays) must set `event_id` itself.

Recipients, first rule that applies:
  1. explicit `audience` list (non-empty; `null` or `[]` is refused: it is always a bug);
  2. union of `data.owner_id`, `data.assignees`, `data.shared_with` (null counts as absent;
     present fields that together name nobody are refused rather than broadcast);
  3. none of those: the shared broadcast stream, every connection (`audience=None`).

Refused messages raise InvalidEvent; the caller sends them to the dead-letter topic.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import NoReturn, TypeGuard

from actors.session_core import IncomingEvent
from gateway import tracing
from gateway.protocol import EVENT_TYPES
from vocab.ids import USER_ID_RE
from vocab.json_types import JsonObject

MAX_ID = 128
TOP_LEVEL_KEYS = frozenset({"event_id", "audience", "type", "data", "ts", "version"})
AUDIENCE_FIELDS = ("owner_id", "assignees", "shared_with")
REASONS = frozenset({
    "too_large", "too_deep", "bad_json", "bad_envelope", "unknown_field", "unknown_type",
    "missing_data", "bad_data", "bad_task_id", "bad_list_id", "bad_event_id", "bad_audience",
    "bad_field", "bad_version",
})


@dataclass(frozen=True)
class TopicLimits:
    max_bytes: int = 65536
    max_depth: int = 16
    max_recipients: int = 1000
    max_string: int = 16384


@dataclass(frozen=True)
class TaskEvent:
    """A validated topic message: the ONE event value (the same object goes to the actor, and
    the record it becomes is `event.recorded(seq, ts)`) and its routing envelope."""

    event: IncomingEvent  # id, type, the producer's data as is, task, list, version
    audience: tuple[str, ...] | None  # None: the shared broadcast stream
    # When it was published (Unix seconds), for the latency metric only: the payload's `ts`, else
    # a sub-second CloudEvent `time`; None when neither says (see published_time()).
    published_at: float | None = dc_field(default=None, compare=False)
    # The CloudEvent's W3C `traceparent` (daprd sets it from the publish) as given, bounded; it is
    # parsed only while tracing is on (gateway/tracing.adopt: 4 us), and a malformed one only
    # means untraced: tracing never decides whether an event is delivered.
    trace: str | None = dc_field(default=None, compare=False)


class InvalidEvent(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _fail(reason: str, message: str) -> NoReturn:
    raise InvalidEvent(reason, message)


def parse_topic_body(raw: bytes, limits: TopicLimits) -> TaskEvent:
    """A task-updates request body: size first (no parser runs on an oversized body), then JSON,
    then the schema. Only InvalidEvent escapes, so a hostile body is DROPped, never a 500."""
    if len(raw) > limits.max_bytes:
        _fail("too_large", f"message is {len(raw)} bytes, limit {limits.max_bytes}")
    try:
        envelope = json.loads(raw)
    except RecursionError:
        # The C scanner recurses per nesting level (~1000 deep); daprd's Go parser accepts 10000.
        _fail("too_deep", "body nests too deep to parse")
    except (ValueError, UnicodeDecodeError) as e:
        _fail("bad_json", f"body is not JSON: {e}")
    return parse_topic_message(envelope, len(raw), limits)


def parse_topic_message(envelope: object, raw_size: int, limits: TopicLimits) -> TaskEvent:
    if raw_size > limits.max_bytes:
        _fail("too_large", f"message is {raw_size} bytes, limit {limits.max_bytes}")
    if not isinstance(envelope, dict):
        _fail("bad_envelope", "envelope is not an object")
    if "data" not in envelope:
        _fail("bad_envelope", "envelope has no data")
    payload = envelope["data"]
    if isinstance(payload, str):
        payload = _loads(payload, limits)
        if not isinstance(payload, dict):
            _fail("bad_json", "data string is not a JSON object")
    if not isinstance(payload, dict):
        _fail("bad_envelope", "envelope data is not an object")
    _check_tree(payload, limits)

    unknown = set(payload) - TOP_LEVEL_KEYS
    if unknown:
        _fail("unknown_field", f"unknown top-level field {sorted(unknown)[0][:64]!r}")
    etype = payload.get("type")
    if not isinstance(etype, str) or etype not in EVENT_TYPES:
        _fail("unknown_type", f"type must be one of {sorted(EVENT_TYPES)}")
    data = payload.get("data")
    if data is None:
        _fail("missing_data", "payload has no data")
    if not isinstance(data, dict):
        _fail("bad_data", "data must be an object")
    task_id = _id_str(data.get("id"))
    if task_id is None:
        _fail("bad_task_id", f"data.id must be an integer or a string of 1..{MAX_ID} chars")
    list_id = None
    if data.get("list_id") is not None:
        list_id = _id_str(data["list_id"])
        if list_id is None:
            _fail("bad_list_id", f"data.list_id must be an integer or a string of 1..{MAX_ID}")
    version = payload.get("version")
    if "version" in payload and (
            isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**63):
        _fail("bad_version", "version must be an integer >= 1 (below 2**63)")
    ts = payload.get("ts")
    if ts is not None and not _is_number(ts) and not isinstance(ts, str):
        _fail("bad_field", "ts must be a number or a string")
    return TaskEvent(
        IncomingEvent(_event_id(payload, envelope), etype, data, task_id, list_id, version),
        audience=_audience(payload, data, limits),
        published_at=published_time(ts, envelope.get("time")),
        trace=tracing.bounded(envelope.get("traceparent")),
    )


def published_time(ts: object, ce_time: object) -> float | None:
    """Unix seconds of the publish, for metrics: a numeric `ts` is seconds (milliseconds when
    above 1e11), a string `ts` ISO 8601 (UTC when it names no zone). Without one, the
    CloudEvent `time`, only when it has a fraction of a second: daprd writes whole seconds,
    which would add up to 1 s of error to a latency measured in milliseconds."""
    if _is_number(ts):
        value = float(ts)
        value = value / 1000.0 if value > 1e11 else value
        return value if math.isfinite(value) and value > 0 else None
    if isinstance(ts, str):
        return _iso(ts)
    if isinstance(ce_time, str) and "." in ce_time:
        return _iso(ce_time)
    return None


def _iso(text: str) -> float | None:
    if len(text) > 64:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _unique_keys(pairs: list[tuple[str, object]]) -> JsonObject:
    out = dict(pairs)
    if len(out) != len(pairs):
        _fail("bad_json", "duplicate key in payload")  # ambiguous: which value is meant?
    return out


def _loads(text: str, limits: TopicLimits) -> object:
    if len(text) > limits.max_bytes:
        _fail("too_large", "data string above the size limit")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        _fail("too_deep", "data string nests too deep")
    except ValueError as e:
        _fail("bad_json", f"data string is not JSON: {str(e)[:100]}")


def _is_number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_tree(root: JsonObject, limits: TopicLimits) -> None:
    """Iterative walk: depth, JSON types only, finite floats, 64-bit ints, bounded UTF-8-clean
    strings. Everything accepted can be re-encoded for clients as JSON and as msgpack."""
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            if len(v) > limits.max_string:
                _fail("too_large", f"string longer than {limits.max_string}")
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                # Lone surrogates: clients could never be sent this as UTF-8.
                _fail("bad_json", "string is not valid Unicode")
        elif isinstance(v, dict | list):
            if depth > limits.max_depth:
                _fail("too_deep", f"payload nests deeper than {limits.max_depth}")
            if isinstance(v, dict):
                for k, item in v.items():
                    if not isinstance(k, str):
                        _fail("bad_json", "object keys must be strings")
                    stack.append((k, depth))
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                _fail("bad_json", "NaN/Infinity are not JSON")  # would break re-encoding
        elif isinstance(v, int) and not isinstance(v, bool):
            if not -(2**63) <= v < 2**64:
                _fail("bad_json", "integer out of 64-bit range")  # msgpack clients can't get it
        elif v is not None and not isinstance(v, bool):
            _fail("bad_json", f"unsupported value type {type(v).__name__}")


def _id_str(v: object) -> str | None:
    # abs() bound first: str() of a huge int is slow and can raise ValueError.
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 10**MAX_ID:
        v = str(v)
    return v if isinstance(v, str) and 1 <= len(v) <= MAX_ID else None


def _valid_event_id(v: object) -> bool:
    return (isinstance(v, str) and 1 <= len(v) <= MAX_ID
            and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in v))


def _event_id(payload: JsonObject, envelope: JsonObject) -> str:
    if "event_id" in payload:
        v, where = payload["event_id"], "event_id"
    else:
        v, where = envelope.get("id"), "CloudEvent id"
    if not _valid_event_id(v):
        _fail("bad_event_id", f"{where} must be a string of 1..{MAX_ID} printable chars")
    return str(v)


def _audience(
    payload: JsonObject, data: JsonObject, limits: TopicLimits
) -> tuple[str, ...] | None:
    if "audience" in payload:
        explicit = payload["audience"]
        if not isinstance(explicit, list) or not explicit:
            _fail("bad_audience", "audience must be a non-empty list of user ids")
        return _users(explicit, limits)
    sources: list[object] = []
    present = False
    for field in AUDIENCE_FIELDS:
        v = data.get(field)
        if v is None:
            continue
        present = True
        if field == "owner_id":
            sources.append(v)
        elif isinstance(v, list):
            sources.extend(v)
        else:
            _fail("bad_audience", f"data.{field} must be a list of user ids")
    if not present:
        return None
    users = _users(sources, limits)
    if not users:
        # Fields that name nobody are not "everyone": broadcasting would leak the task.
        _fail("bad_audience", "audience fields are present but name no user")
    return users


def _users(values: list[object], limits: TopicLimits) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for v in values:
        uid = _id_str(v)
        if uid is None or not USER_ID_RE.fullmatch(uid):
            shown = repr(v[:64]) if isinstance(v, str) else f"of type {type(v).__name__}"
            _fail("bad_audience", f"invalid user id {shown}")
        seen[uid] = None
        if len(seen) > limits.max_recipients:
            _fail("bad_audience", f"more than {limits.max_recipients} recipients")
    return tuple(seen)
