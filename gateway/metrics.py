"""Every Prometheus metric of a gateway replica, in one registry (served at /metrics).

Hot-path cost: a counter increment or one histogram observation (~1 µs) where the event passes;
label sets are small and fixed (transport, close code, actor type and method, drop reason, resync
reason), never a user or a connection id. What the replica already counts (the fan-out's
counters) and what is a property of the connection table (connections, send-queue depths) is read
when scraped, by `_TableCollector`, so it costs nothing between scrapes.

Publish-to-socket latency is measured from the event's publish time: the payload's `ts`, else a
CloudEvent `time` with sub-second precision (daprd's own `time` has whole seconds: too coarse,
ignored), to the moment the event is handed to a connection on this replica (its ordering cursor
and send queue). An event without a usable publish time is counted in
`tasksync_gateway_events_unstamped_total` and measured from when this replica received it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from gateway import protocol

if TYPE_CHECKING:
    from gateway.connection import Connection
    from gateway.context import Context
    from gateway.hub import Hub

REGISTRY = CollectorRegistry(auto_describe=True)
# RSS and CPU seconds per process: the capacity figures of docs/scaling.md.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_NS = "tasksync_gateway"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUEUE_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)

CONNECTS = Counter(f"{_NS}_connects", "Connections accepted (authenticated, before the attach)",
                   ["transport"], registry=REGISTRY)
DISCONNECTS = Counter(f"{_NS}_disconnects", "Connections ended, by close code ('none': the "
                      "transport ended without one, e.g. an SSE client went away)",
                      ["transport", "code"], registry=REGISTRY)
DELIVERED = Counter(f"{_NS}_events_delivered", "Event frames written to a client socket",
                    ["transport"], registry=REGISTRY)
FORWARDED = Counter(f"{_NS}_events_forwarded", "Events sent to another replica (forward items "
                    "accepted by the peer)", registry=REGISTRY)
FORWARD_FAILED = Counter(f"{_NS}_events_forward_failed", "Forward items a peer did not take "
                         "(their messages are retried)", registry=REGISTRY)
FORWARDS_IN = Counter(f"{_NS}_forwards_received", "Events received from other replicas",
                      registry=REGISTRY)
DROPPED = Counter(f"{_NS}_events_dropped", "Topic messages refused and dead-lettered (DROP)",
                  ["reason"], registry=REGISTRY)
RETRIED = Counter(f"{_NS}_events_retried", "Topic messages answered RETRY (redelivered)",
                  registry=REGISTRY)
UNSTAMPED = Counter(f"{_NS}_events_unstamped", "Topic messages without a usable publish time",
                    registry=REGISTRY)
RESUMES = Counter(f"{_NS}_resumes", "Connects that presented a position: resumed exactly or "
                  "told to resync", ["result"], registry=REGISTRY)
RESYNCS = Counter(f"{_NS}_resyncs", "resync_required frames sent, by reason", ["reason"],
                  registry=REGISTRY)
ACTOR_CALL = Histogram(f"{_NS}_actor_call_seconds", "Actor calls through daprd, by outcome",
                       ["actor_type", "method", "outcome"], buckets=LATENCY_BUCKETS,
                       registry=REGISTRY)
PUBLISH_LAG = Histogram(f"{_NS}_publish_to_socket_seconds", "From the event's publish time to "
                        "its hand-over to a connection here", buckets=LATENCY_BUCKETS,
                        registry=REGISTRY)

# Bounded label values: anything else is counted as "other".
_ACTOR_TYPES = frozenset({"UserSession", "ReplicaRegistry"})
_RESYNC_REASONS = frozenset({"epoch_mismatch", "ahead_of_log", "too_old", "epoch_changed"})
_DELIVERED = {t: DELIVERED.labels(t) for t in ("websocket", "sse")}
_DELIVERED_OTHER = DELIVERED.labels("other")
_CALLS: dict[tuple[str, str, str], Any] = {}


# -- calls from the hot path ---------------------------------------------------------------------
def delivered(transport: str, frame: protocol.Frame) -> None:
    """After a frame was written: count it if it is an event frame."""
    if isinstance(frame, protocol.SharedFrame) or ("data" in frame and "seq" in frame):
        _DELIVERED.get(transport, _DELIVERED_OTHER).inc()


def actor_call(actor_type: str, method: str, ok: bool, seconds: float) -> None:
    key = (actor_type if actor_type in _ACTOR_TYPES else "other", method[:32],
           "ok" if ok else "error")
    child = _CALLS.get(key)
    if child is None:
        if len(_CALLS) > 256:  # a method name is a code constant; this never trips
            key = (key[0], "other", key[2])
        child = _CALLS[key] = ACTOR_CALL.labels(*key)
    child.observe(seconds)


def published_lag(ts: float) -> None:
    PUBLISH_LAG.observe(max(0.0, time.time() - ts))


def connected(transport: str) -> None:
    CONNECTS.labels(transport).inc()


def disconnected(conn: Connection) -> None:
    code = conn.close_code
    DISCONNECTS.labels(conn.transport, str(code.code) if code is not None else "none").inc()


def attached(since: str | None, resumed: bool, reason: str) -> None:
    """One attach answer: a resume when the client presented a position."""
    if since:
        RESUMES.labels("resumed" if resumed else "resync" if reason else "fresh").inc()


def resync(reason: str) -> None:
    RESYNCS.labels(reason if reason in _RESYNC_REASONS else "other").inc()


# -- read on scrape ------------------------------------------------------------------------------
class _TableCollector:
    """Connections by transport, send-queue depths and the fan-out's own counters, read from
    the replica's objects when scraped (nothing on the hot path)."""

    def __init__(self) -> None:
        self.ctx: Context | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: families depend on the bound context

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        if ctx is None:
            return
        yield from _connections(ctx.hub)
        f = ctx.fanout
        for name, doc, value in (
            ("events_received", "Valid topic messages handed to the fan-out (with redeliveries)",
             f.events),
            ("events_stale", "Events superseded by a later version of their task (not delivered)",
             f.stale),
            ("events_held", "Events held by the actor for a missing earlier version", f.held),
            ("events_released", "Held events routed by a later turn", f.released),
            ("actor_calls_fanout", "Actor calls made by the fan-out", f.actor_calls),
            ("forward_batches", "Forward POSTs to other replicas (one per outbox flush)",
             f.forwards),
            ("fanout_bugs", "Topic batches that failed with a non-transient error", f.bugs),
            ("tail_fills", "Lost tails found by the quiet-connection check", ctx.hub.tail_fills),
        ):
            yield CounterMetricFamily(f"{_NS}_{name}", doc, value=value)
        yield GaugeMetricFamily(f"{_NS}_draining", "1 while this replica drains",
                                value=1 if ctx.hub.draining else 0)


def _connections(hub: Hub) -> Iterator[Metric]:
    by_transport = {"websocket": 0, "sse": 0}
    counts = [0] * (len(QUEUE_BUCKETS) + 1)
    total = 0
    for conn in list(hub.conns.values()):
        by_transport[conn.transport] = by_transport.get(conn.transport, 0) + 1
        depth = conn.queue.qsize()
        total += depth
        for i, bound in enumerate(QUEUE_BUCKETS):
            if depth <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
    g = GaugeMetricFamily(f"{_NS}_connections", "Open connections on this replica",
                          labels=["transport"])
    for transport, n in sorted(by_transport.items()):
        g.add_metric([transport], n)
    yield g
    cumulative: list[tuple[str, float]] = []
    running = 0
    for le, n in zip([*(str(float(b)) for b in QUEUE_BUCKETS), "+Inf"], counts, strict=True):
        running += n
        cumulative.append((le, running))
    yield HistogramMetricFamily(
        f"{_NS}_send_queue_depth", "Frames queued per connection, sampled when scraped",
        buckets=cumulative, sum_value=total)


TABLE = _TableCollector()
REGISTRY.register(TABLE)


def bind(ctx: Context) -> None:
    """The replica whose table is read on scrape (one app per process; the last one wins)."""
    TABLE.ctx = ctx


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
