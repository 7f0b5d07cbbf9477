"""One trace from the producer's publish to the frame on the socket, read back from Jaeger.

Real parts only: the producer's daprd publishes to Redis Streams, a gateway's daprd delivers the
bulk batch to its gateway, the gateway calls the UserSession actor through its daprd and the
sessions host's daprd, and a gateway writes the frame to the WebSocket. Every daprd and the
gateways export to the topology's Jaeger (devtools/jaeger.py); the test asks Jaeger's query API.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from devtools.topology import Topology
from devtools.traces import tree
from gateway import tracing
from tests.integration.harness import WsClient, event, publish

pytestmark = pytest.mark.integration
ACTOR_OP = "CallActor/UserSession/deliver"


def _spans(trace: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(service, operation, tags) of every span of a Jaeger trace."""
    procs = {k: v["serviceName"] for k, v in trace.get("processes", {}).items()}
    return [
        (procs.get(s["processID"], "?"), s["operationName"],
         {t["key"]: t["value"] for t in s.get("tags", [])})
        for s in trace.get("spans", [])
    ]


def _hops(spans: list[tuple[str, str, dict[str, Any]]], event_id: str) -> dict[str, bool]:
    return {
        # The producer's daprd serving the publish call.
        "publish": any(svc == "producer" and "publish" in op for svc, op, _ in spans),
        # A gateway's daprd delivering the topic batch to its gateway.
        "delivery": any(svc == "gateway" and op == "pubsub/task-updates" for svc, op, _ in spans),
        # The actor call: the gateway's daprd takes it, the sessions host's daprd runs it.
        "actor (gateway daprd)": ("gateway", ACTOR_OP) in {(svc, op) for svc, op, _ in spans},
        "actor (sessions daprd)": ("sessions", ACTOR_OP) in {(svc, op) for svc, op, _ in spans},
        # The gateway's socket write of this event's frame.
        "frame write": any(
            svc == "tasksync-gateway" and op == tracing.SPAN_WRITE
            and tags.get("tasksync.event") == event_id
            for svc, op, tags in spans
        ),
    }


async def test_one_trace_spans_publish_gateway_actor_and_frame_write(topo: Topology) -> None:
    assert topo.jaeger is not None, "the shared topology runs with Jaeger"
    user = f"trace-{uuid.uuid4().hex[:8]}"
    client = await WsClient.connect(topo, "gw-a", user)
    try:
        root = tracing.new_traceparent()
        trace_id = root.split("-")[1]
        body = event("task_created", 1, [user])
        await publish(topo, body, traceparent=root)
        (frame,) = await client.events(1)
        assert frame["id"] == body["event_id"]
        # The frame says which trace it belongs to (docs/protocol.md).
        got = tracing.parse(frame.get("traceparent"))
        assert got is not None and got.trace_id == trace_id and got.sampled

        # An unsampled publish is delivered as ever, untraced: no context in its frame.
        plain = event("task_updated", 1, [user])
        await publish(topo, plain, traceparent=tracing.new_traceparent(sampled=False))
        (frame2,) = await client.events(1)
        assert frame2["id"] == plain["event_id"] and "traceparent" not in frame2
    finally:
        await client.close()

    # daprd exports in batches (every 5 s by default): poll the query API, bounded.
    deadline = time.monotonic() + 45
    hops: dict[str, bool] = {}
    spans: list[tuple[str, str, dict[str, Any]]] = []
    trace: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        trace = await asyncio.to_thread(topo.jaeger.trace, trace_id)
        spans = _spans(trace) if trace else []
        hops = _hops(spans, body["event_id"])
        if all(hops.values()):
            break
        await asyncio.sleep(0.5)
    shown = "\n".join(tree(trace)) if trace else "(not in Jaeger)"
    print(shown)  # the whole trace, with -s
    assert all(hops.values()), f"missing hops {hops} in trace {trace_id}:\n{shown}"
