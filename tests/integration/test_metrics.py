"""/metrics of every app, scraped from the real processes during a run, checked against the
events this test sends (deltas: other tests share the topology)."""

import time
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devtools.topology import Topology
from tests.integration.harness import WsClient, event, poll_until, publish

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
GATEWAYS = ("gateway-gw-a", "gateway-gw-b")
SESSIONS = ("sessions-s1", "sessions-s2")


def scrape(topo: Topology, name: str, headers: dict[str, str] | None = None) -> Samples:
    r = httpx.get(f"http://127.0.0.1:{topo.apps[name].app_port}/metrics", timeout=10,
                  headers={"dapr-api-token": topo.app_token} if headers is None else headers)
    assert r.status_code == 200, r.text
    out: Samples = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: list[Samples], name: str, **labels: str) -> float:
    """Sum of every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for s in samples for (n, lab), v in s.items()
               if n == name and want <= set(lab))


def gateways(topo: Topology) -> list[Samples]:
    return [scrape(topo, n) for n in GATEWAYS]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_metrics_need_a_token_on_every_app(topo: Topology) -> None:
    for name in (*GATEWAYS, *SESSIONS, "producer"):
        port = topo.apps[name].app_port
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert r.status_code == 403, (name, r.status_code)
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10,
                      headers={"dapr-api-token": "wrong"})
        assert r.status_code == 403, (name, r.status_code)
        samples = scrape(topo, name)
        assert ("process_resident_memory_bytes", ()) in samples, name


async def test_counts_match_the_events_sent(topo: Topology) -> None:
    u = uid("metrics")
    n = 6
    before = gateways(topo)
    c = await WsClient.connect(topo, "gw-a", u)
    opened = scrape(topo, "gateway-gw-a")
    conns = "tasksync_gateway_connections"
    assert total([opened], conns, transport="websocket") == \
        total([before[0]], conns, transport="websocket") + 1
    sessions_before = [scrape(topo, s) for s in SESSIONS]

    for i in range(n):
        await publish(topo, {**event("task_updated", 7000 + i, audience=[u]), "ts": time.time()})
    await c.events(n)
    # An invalid message: dead-lettered, counted by reason.
    await publish(topo, {"type": "task_updated", "data": {"id": 1}, "bogus": 1,
                         "audience": [u]})

    delivered = "tasksync_gateway_events_delivered_total"
    dropped = "tasksync_gateway_events_dropped_total"

    def settled() -> bool:
        now = gateways(topo)
        return (total(now, delivered) - total(before, delivered) == n
                and total(now, dropped, reason="unknown_field")
                - total(before, dropped, reason="unknown_field") == 1)

    await poll_until(settled, 10, "delivered and dropped counters")
    after = gateways(topo)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # Exactly n event frames for n events to a user with one connection, all on gw-a.
    assert delta(delivered, transport="websocket") == n
    assert total([after[1]], delivered) == total([before[1]], delivered)
    # Every valid message reached a fan-out once, plus once per RETRY it was answered.
    assert delta("tasksync_gateway_events_received_total") == \
        n + delta("tasksync_gateway_events_retried_total")
    # What gw-b consumed went to gw-a as forwards; each arrived once.
    forwarded = delta("tasksync_gateway_events_forwarded_total")
    assert forwarded == delta("tasksync_gateway_forwards_received_total") <= n
    assert delta("tasksync_gateway_events_unstamped_total") == 0
    # Each event was handed to the one connection (again only after a redelivery).
    assert delta("tasksync_gateway_publish_to_socket_seconds_count") >= n
    assert delta("tasksync_gateway_publish_to_socket_seconds_bucket", le="+Inf") >= n
    assert delta("tasksync_gateway_actor_call_seconds_count", actor_type="UserSession",
                 method="deliver", outcome="ok") >= 1
    assert delta("tasksync_gateway_actor_call_seconds_count", actor_type="UserSession",
                 method="attach", outcome="ok") == 1
    # Sessions hosts: the same turns, seen from the other side, and their state writes.
    sessions_after = [scrape(topo, s) for s in SESSIONS]
    turns = "tasksync_sessions_actor_turns_total"
    assert total(sessions_after, turns, actor_type="UserSession", method="deliver") - \
        total(sessions_before, turns, actor_type="UserSession", method="deliver") >= 1
    writes = "tasksync_sessions_state_write_seconds_count"
    assert total(sessions_after, writes, outcome="ok") - \
        total(sessions_before, writes, outcome="ok") >= 1

    # A clean close by the client: one disconnect with code 1000, one connection fewer.
    await c.close()

    def closed() -> bool:
        s = scrape(topo, "gateway-gw-a")
        return total([s], "tasksync_gateway_disconnects_total", transport="websocket",
                     code="1000") == total([before[0]], "tasksync_gateway_disconnects_total",
                                           transport="websocket", code="1000") + 1
    await poll_until(closed, 10, "disconnect counted")
    final = scrape(topo, "gateway-gw-a")
    assert total([final], conns, transport="websocket") == \
        total([before[0]], conns, transport="websocket")


async def test_resumes_and_resyncs_by_reason(topo: Topology) -> None:
    u = uid("resume")
    c = await WsClient.connect(topo, "gw-b", u)
    await publish(topo, event("task_created", 1, audience=[u]))
    (ev,) = await c.events(1)
    position = f"{c.welcome['epoch']}:{ev['seq']}"
    await c.close()
    before = gateways(topo)
    again = await WsClient.connect(topo, "gw-a", u, since=position)
    assert again.welcome["resumed"] is True
    await again.close()
    stale = await WsClient.connect(topo, "gw-b", u, since="0123456789abcdef:1")
    assert (await stale.next_frame())["type"] == "resync_required"
    await stale.close()
    after = gateways(topo)
    resumes, resyncs = "tasksync_gateway_resumes_total", "tasksync_gateway_resyncs_total"
    assert total(after, resumes, result="resumed") - total(before, resumes, result="resumed") == 1
    assert total(after, resumes, result="resync") - total(before, resumes, result="resync") == 1
    assert total(after, resyncs, reason="epoch_mismatch") - \
        total(before, resyncs, reason="epoch_mismatch") == 1
