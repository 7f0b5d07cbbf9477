"""Every Prometheus metric of a sessions host, in one registry (served at /metrics by
actors/host.py, with the app token or TASKSYNC_METRICS_TOKEN: vocab/scrape.py).

Actor turns are timed where daprd's method calls enter (actors/fast_dispatch.py), labelled by
actor type and method only (never by actor id: one series per user would explode); the state
store's latency where the pooled state client calls daprd (actors/state_client.py).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # RSS, CPU seconds: capacity (docs/scaling.md)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_NS = "tasksync_sessions"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

TURNS = Counter(f"{_NS}_actor_turns", "Actor method calls served (turns), by outcome",
                ["actor_type", "method", "outcome"], registry=REGISTRY)
TURN_SECONDS = Histogram(f"{_NS}_actor_turn_seconds", "Time in the actor runtime per method "
                         "call (waiting for the turn included)", ["actor_type", "method"],
                         buckets=BUCKETS, registry=REGISTRY)
STATE_WRITE = Histogram(f"{_NS}_state_write_seconds", "One state transaction through daprd "
                        "(meta + touched chunk)", ["outcome"], buckets=BUCKETS, registry=REGISTRY)
STATE_READ = Histogram(f"{_NS}_state_read_seconds", "One state key read through daprd "
                       "(actor activation)", ["outcome"], buckets=BUCKETS, registry=REGISTRY)

_TYPES = frozenset({"UserSession", "ReplicaRegistry"})
_METHODS = frozenset({
    "deliver", "attach", "read", "detach", "ack", "set_filters", "inspect",  # UserSession
    "heartbeat", "snapshot", "leave",  # ReplicaRegistry
})
_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}


def turn(actor_type: str, method: str, ok: bool, seconds: float) -> None:
    key = (actor_type if actor_type in _TYPES else "other",
           method if method in _METHODS else "other")
    c = _children.get(key)
    if c is None:
        c = _children[key] = (TURNS.labels(*key, "ok"), TURNS.labels(*key, "error"),
                              TURN_SECONDS.labels(*key))
    (c[0] if ok else c[1]).inc()
    c[2].observe(seconds)


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
