"""W3C trace context through the gateway (docs/operations.md, Tracing).

A producer's publish carries a `traceparent`; daprd copies it into the CloudEvent. The gateway
reads it per topic entry (topic_schema.py), and while one user's delivery runs (one task per user
per batch, gateway/fanout.py) the first event's context is this task's *active* context: the actor
call to daprd sends it as the `traceparent` header (so both daprds' actor spans join the trace),
the event frame carries it (`traceparent`, docs/protocol.md), and forwards carry it to the replica
that writes the frame. Each transport writer records the socket write of such a frame as a span
of that trace, exported over OTLP/HTTP by the OpenTelemetry SDK.

Cost: with TASKSYNC_TRACING_ENDPOINT unset nothing is active and the hot path pays one global or
context-variable read per call. Only *sampled* contexts are adopted; the gateway never starts a
trace of its own (daprd's parent-based sampler decides which publishes are traced).
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from vocab.json_types import JsonObject

log = logging.getLogger("gateway.tracing")

_HEX = frozenset("0123456789abcdef")
SPAN_WRITE = "frame write"


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"


def _hex(s: str, n: int) -> bool:
    return len(s) == n and set(s) <= _HEX and s != "0" * n


def parse(value: object) -> TraceParent | None:
    """A `traceparent` value per W3C Trace Context level 1, or None (never raises: a bad value
    from a producer only means the event is not traced). Version 00 is exactly 55 characters;
    a later version may append `-...` fields, which are ignored; version ff is invalid."""
    if not isinstance(value, str) or not 55 <= len(value) <= 512:
        return None
    version, rest = value[:2], value[2:]
    if version == "ff" or not set(version) <= _HEX:
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    if rest[0] != "-" or rest[33] != "-" or rest[50] != "-":
        return None
    trace_id, span_id, flags = rest[1:33], rest[34:50], rest[51:53]
    if not (_hex(trace_id, 32) and _hex(span_id, 16) and set(flags) <= _HEX and len(flags) == 2):
        return None
    return TraceParent(trace_id, span_id, int(flags, 16))


def new_traceparent(sampled: bool = True) -> str:
    """A new root context, as a producer starts a trace for one publish."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{int(sampled):02x}"


def bounded(value: object) -> str | None:
    """A candidate traceparent kept for later (a str of sane length), without parsing it."""
    return value if isinstance(value, str) and len(value) <= 512 else None


def header_value(value: object) -> str | None:
    """The normalized (version 00) header of a valid traceparent, else None."""
    tp = parse(value)
    return tp.header if tp is not None else None


# -- runtime state -----------------------------------------------------------------------------
_active: contextvars.ContextVar[TraceParent | None] = contextvars.ContextVar(
    "tasksync_trace", default=None)
_tracer: Any = None  # opentelemetry Tracer when tracing is on
_provider: Any = None


def enabled() -> bool:
    return _tracer is not None


def configure(endpoint: str, service: str, instance: str, exporter: Any = None) -> None:
    """Turn tracing on: spans go to `endpoint` (an OTLP/HTTP base URL, e.g.
    http://127.0.0.1:4318) in batches from a background thread. Empty = off. Tests pass an
    SDK `exporter` instead (spans then go to it synchronously)."""
    global _tracer, _provider
    if not endpoint and exporter is None:
        return
    # Imported here: a gateway without tracing never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({"service.name": service, "service.instance.id": instance})
    provider = TracerProvider(resource=resource)  # private: never the global provider
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        otlp = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
        # 1 s batches: a trace is queryable soon after the frame is written (tests poll it).
        provider.add_span_processor(BatchSpanProcessor(otlp, schedule_delay_millis=1000))
    _provider, _tracer = provider, provider.get_tracer("tasksync.gateway")
    log.info("tracing on: spans to %s as %s/%s", endpoint, service, instance)


def shutdown() -> None:
    """Flush and stop the exporter (blocking: call from a thread)."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def adopt(traceparent: str | None) -> None:
    """Make `traceparent` this task's active context (a delivery task per user: the actor call
    and the frames it routes carry it). Unsampled or absent contexts, or tracing off: no-op."""
    if _tracer is None or traceparent is None:
        return
    tp = parse(traceparent)
    if tp is not None and tp.sampled:
        _active.set(tp)


def active() -> TraceParent | None:
    return _active.get()


def active_header() -> str | None:
    tp = _active.get()
    return tp.header if tp is not None else None


def with_header(headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus the active `traceparent`, for a call to daprd (the same dict when none)."""
    tp = _active.get()
    if tp is None:
        return headers
    return {**headers, "traceparent": tp.header}


def tag(frame: JsonObject, tp: TraceParent | None) -> JsonObject:
    """An event frame with the trace context it belongs to (docs/protocol.md)."""
    if tp is not None:
        frame["traceparent"] = tp.header
    return frame


class adopted:
    """Context manager: `traceparent` is the active context inside the block only (a forward
    batch carries one per item, applied in one synchronous loop)."""

    __slots__ = ("_token", "_tp")

    def __init__(self, traceparent: str | None) -> None:
        self._tp = parse(traceparent) if _tracer is not None and traceparent else None
        self._token: contextvars.Token[TraceParent | None] | None = None

    def __enter__(self) -> None:
        if self._tp is not None and self._tp.sampled:
            self._token = _active.set(self._tp)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _active.reset(self._token)


def write_started() -> int:
    """Start time of a socket write when tracing is on (0 when off: writers skip the rest)."""
    return time.time_ns() if _tracer is not None else 0


def _seq(v: object) -> int:
    return v if isinstance(v, int) else 0


def frame_written(body: JsonObject | None, transport: str, conn_id: str,
                  started_ns: int) -> None:
    """Record the socket write of a traced event frame as a span of its trace. Frames without
    a `traceparent` (untraced events, pings, replays read from the log) cost a dict lookup."""
    tracer = _tracer
    if tracer is None or body is None:
        return
    tp = parse(body.get("traceparent"))
    if tp is None:
        return
    from opentelemetry import trace

    parent = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
        trace_id=int(tp.trace_id, 16), span_id=int(tp.span_id, 16), is_remote=True,
        trace_flags=trace.TraceFlags(tp.flags))))
    span = tracer.start_span(
        SPAN_WRITE, context=parent, kind=trace.SpanKind.PRODUCER, start_time=started_ns,
        attributes={"tasksync.transport": transport, "tasksync.conn": conn_id,
                    "tasksync.event": str(body.get("id", "")),
                    "tasksync.seq": _seq(body.get("seq", body.get("bseq")))})
    span.end()
