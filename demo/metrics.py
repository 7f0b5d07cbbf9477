"""Prometheus metrics of the demo producer (served at /metrics with the app token or
TASKSYNC_METRICS_TOKEN, like every app: vocab/scrape.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

PUBLISHES = Counter("tasksync_producer_publishes", "Publishes to task-updates through daprd, by "
                    "event type and outcome", ["type", "outcome"], registry=REGISTRY)
PUBLISH_SECONDS = Histogram(
    "tasksync_producer_publish_seconds", "One publish call to daprd (until it answered)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
    registry=REGISTRY)


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
