"""Issue 3 through the real runtime: two gateway replicas, the sessions host, Redis.

Absence is never proven by waiting: after the thing that must NOT arrive, a barrier event is
published to the same user; per-user seqs are delivered in order, so when the barrier arrives,
anything sent before it would already have arrived."""

import asyncio
import uuid

import pytest

from actors.session_storage import CHUNK
from devtools.procs import wait_until
from devtools.topology import Topology
from tests.integration.harness import WsClient, actor, event, publish, redis_cli


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seqs(frames: list[dict]) -> list[int]:
    return [f["seq"] for f in frames]


async def test_devices_on_both_replicas_get_each_event_once_and_others_nothing(
    topo: Topology,
) -> None:
    u, other = uid("multi"), uid("bystander")
    d1 = await WsClient.connect(topo, "gw-a", u)
    d2 = await WsClient.connect(topo, "gw-b", u)
    o = await WsClient.connect(topo, "gw-a", other)
    for i in range(5):
        await publish(topo, event("task_updated", 1000 + i, audience=[u]))
    got1, got2 = await d1.events(5), await d2.events(5)
    assert seqs(got1) == seqs(got2) == [1, 2, 3, 4, 5]
    # Competing consumers may record concurrent publishes in either order; each device sees
    # the one order the actor recorded, and every event exactly once.
    assert [f["id"] for f in got1] == [f["id"] for f in got2]
    assert sorted(f["data"]["id"] for f in got1) == [1000, 1001, 1002, 1003, 1004]
    # Barriers: the next frame each one sees must be its barrier, nothing before it.
    await publish(topo, event("task_created", 9, audience=[u, other]))
    assert seqs(await d1.events(1)) == [6]
    assert seqs(await d2.events(1)) == [6]
    (first_for_other,) = await o.events(1)
    assert first_for_other["seq"] == 1 and first_for_other["data"]["id"] == 9
    for c in (d1, d2, o):
        await c.close()


async def test_owner_assignees_shared_with_are_the_audience(topo: Topology) -> None:
    owner, assignee, friend = uid("own"), uid("asg"), uid("shr")
    clients = [
        await WsClient.connect(topo, r, x)
        for r, x in (("gw-a", owner), ("gw-b", assignee), ("gw-a", friend))
    ]
    await publish(
        topo,
        {
            "event_id": uuid.uuid4().hex,
            "type": "task_created",
            "data": {
                "id": 5,
                "title": "x",
                "owner_id": owner,
                "assignees": [assignee],
                "shared_with": [friend],
            },
        },
    )
    for c in clients:
        (ev,) = await c.events(1)
        assert ev["data"]["id"] == 5 and ev["seq"] == 1
        await c.close()


async def test_persisted_and_connection_filters(topo: Topology) -> None:
    u = uid("filt")
    a = await WsClient.connect(topo, "gw-a", u)
    b = await WsClient.connect(topo, "gw-b", u)
    await a.send(
        {
            "type": "subscribe",
            "scope": "user",
            "filters": {"types": ["task_completed", "task_updated"]},
        }
    )
    sub = await a.next_frame()
    assert sub["type"] == "subscribed" and sub["scope"] == "user"
    await b.send({"type": "subscribe", "filters": {"task_ids": [7]}})
    assert (await b.next_frame())["type"] == "subscribed"

    await publish(topo, event("task_created", 7, audience=[u]))  # filtered by the user filter
    await publish(topo, event("task_completed", 8, audience=[u]))  # a: yes, b: no (task 8)
    await publish(topo, event("task_updated", 7, audience=[u]))  # both
    got_a = await a.events(2)
    # Filtered events take no seq: the two that pass are 1 and 2 (in whichever order the
    # competing consumers recorded them).
    assert [f["seq"] for f in got_a] == [1, 2]
    assert {(f["type"], f["data"]["id"]) for f in got_a} == {
        ("task_completed", 8),
        ("task_updated", 7),
    }
    (got_b,) = await b.events(1)
    assert (got_b["type"], got_b["data"]["id"]) == ("task_updated", 7)
    assert got_b["seq"] == next(f["seq"] for f in got_a if f["data"]["id"] == 7)
    await a.close()
    await b.close()


async def test_resume_100_missed_events_on_the_other_replica_then_live(topo: Topology) -> None:
    u = uid("resume")
    first = await WsClient.connect(topo, "gw-a", u, device="phone")
    epoch, start = first.welcome["epoch"], first.welcome["seq"]
    await first.close()
    for i in range(100):
        await publish(topo, event("task_updated", i, audience=[u]))

    # Wait (bounded) until the log has all 100, so the replay is the thing under test.
    async def head() -> int:
        return int((await actor(topo, "UserSession", u, "inspect"))["meta"]["head"])

    for _ in range(200):
        if await head() == 100:
            break
        await asyncio.sleep(0.1)
    again = await WsClient.connect(topo, "gw-b", u, device="phone", since=f"{epoch}:{start}")
    assert again.welcome["resumed"] is True
    replay = await again.events(100)
    assert seqs(replay) == list(range(1, 101))
    assert sorted(f["data"]["id"] for f in replay) == list(range(100))
    await publish(topo, event("task_deleted", 500, audience=[u]))
    (live,) = await again.events(1)
    assert live["seq"] == 101 and live["type"] == "task_deleted"
    await again.close()


async def test_resume_seam_while_events_keep_flowing(topo: Topology) -> None:
    """Reconnect in the middle of a stream: no gap and no duplicate at the replay/live seam."""
    u = uid("seam")
    c = await WsClient.connect(topo, "gw-a", u)
    epoch = c.welcome["epoch"]

    async def producer() -> None:
        for i in range(60):
            await publish(topo, event("task_updated", i, audience=[u]))

    task = asyncio.create_task(producer())
    got = await c.events(20)
    await c.close()
    c2 = await WsClient.connect(topo, "gw-b", u, since=f"{epoch}:{got[-1]['seq']}")
    rest = await c2.events(40)
    await task
    assert seqs(got + rest) == list(range(1, 61))
    await c2.close()


async def test_duplicate_topic_message_yields_no_duplicate(topo: Topology) -> None:
    u = uid("dup")
    c = await WsClient.connect(topo, "gw-a", u)
    ev = event("task_created", 1, audience=[u])
    await publish(topo, ev)
    await publish(topo, ev)  # same event_id: a producer retry
    await publish(topo, event("task_updated", 2, audience=[u]))  # barrier
    got = await c.events(2)
    assert [f["seq"] for f in got] == [1, 2]
    assert sorted(f["data"]["id"] for f in got) == [1, 2]
    await c.close()


async def test_transient_actor_failure_is_retried_and_delivered_once(topo: Topology) -> None:
    """Sessions host down: the gateway answers RETRY; the resiliency policy redelivers after it
    comes back; dedup by event id keeps it to exactly one log entry."""
    u = uid("retry")
    c = await WsClient.connect(topo, "gw-a", u)
    epoch = c.welcome["epoch"]
    await c.close()
    topo.stop_app("sessions")
    try:
        await publish(topo, event("task_created", 77, audience=[u]))
    finally:
        topo.start_app("sessions")
        topo.wait_app("sessions")

    async def head() -> int:
        return int((await actor(topo, "UserSession", u, "inspect"))["meta"]["head"])

    for _ in range(300):
        if await head() >= 1:
            break
        await asyncio.sleep(0.1)
    back = await WsClient.connect(topo, "gw-b", u, since=f"{epoch}:0")
    await publish(topo, event("task_updated", 78, audience=[u]))  # barrier
    got = await back.events(2)
    assert [(f["seq"], f["data"]["id"]) for f in got] == [(1, 77), (2, 78)]
    await back.close()


async def test_broadcast_reaches_every_connected_user(topo: Topology) -> None:
    users = [uid("bc") for _ in range(3)]
    clients = [
        await WsClient.connect(topo, ("gw-a", "gw-b")[i % 2], x) for i, x in enumerate(users)
    ]
    marker = uuid.uuid4().hex
    await publish(
        topo,
        {"event_id": marker, "type": "task_updated", "data": {"id": 1, "title": "announcement"}},
    )
    for c in clients:
        evs = await c.events(1)
        # Earlier broadcasts from other tests may be in the log too: find ours by id.
        while evs[-1]["id"] != marker:
            evs += await c.events(1)
        assert sum(1 for f in evs if f["id"] == marker) == 1
        await c.close()


async def test_missed_broadcasts_arrive_exactly_once_on_resume_elsewhere(
    topo: Topology,
) -> None:
    """The shared broadcast stream: a device that was away gets the broadcasts it missed when it
    resumes with both positions, on the other gateway, then live ones; nothing twice."""
    u = uid("bcr")
    c = await WsClient.connect(topo, "gw-a", u)
    first = uuid.uuid4().hex
    await publish(topo, {"event_id": first, "type": "task_created", "data": {"id": 1}})
    evs = await c.events(1)
    while evs[-1]["id"] != first:  # earlier tests' broadcasts may arrive first
        evs += await c.events(1)
    w, b0 = c.welcome, evs[-1]["bseq"]
    since = f"{w['epoch']}:{w['seq']},{w['bepoch']}:{b0}"
    await c.close()
    missed = [uuid.uuid4().hex for _ in range(3)]
    for i, eid in enumerate(missed):
        await publish(topo, {"event_id": eid, "type": "task_updated", "data": {"id": 2 + i}})
    for _ in range(300):  # recorded in the broadcast log (bounded wait)
        if (await actor(topo, "UserSession", "~broadcast", "inspect"))["meta"]["head"] >= b0 + 3:
            break
        await asyncio.sleep(0.1)
    back = await WsClient.connect(topo, "gw-b", u, since=since)
    assert back.welcome["resumed"] is True
    got = await back.events(3)
    # Gap-free and exactly the missed ones (two gateways consume the topic: the log's order
    # need not be the publish order).
    assert [f["bseq"] for f in got] == [b0 + 1, b0 + 2, b0 + 3]
    assert sorted(f["id"] for f in got) == sorted(missed)
    live = uuid.uuid4().hex
    await publish(topo, {"event_id": live, "type": "task_completed", "data": {"id": 9}})
    (nxt,) = await back.events(1)
    assert (nxt["bseq"], nxt["id"]) == (b0 + 4, live)
    assert "seq" not in nxt
    await back.close()


@pytest.mark.parametrize("kind", ["stale_epoch", "too_old", "ahead_of_log"])
async def test_unusable_position_gets_resync_required(topo: Topology, kind: str) -> None:
    u = uid("resync")
    c = await WsClient.connect(topo, "gw-a", u)
    epoch = c.welcome["epoch"]
    await c.close()
    if kind == "stale_epoch":
        since = "0123456789abcdef:3"
    elif kind == "ahead_of_log":
        since = f"{epoch}:999"
    else:
        for i in range(230):  # retention in the test topology: 200 events
            await publish(topo, event("task_updated", i, audience=[u]))
        for _ in range(300):
            if (await actor(topo, "UserSession", u, "inspect"))["meta"]["head"] == 230:
                break
            await asyncio.sleep(0.1)
        since = f"{epoch}:0"
    r = await WsClient.connect(topo, "gw-b", u, since=since)
    frame = await r.next_frame()
    assert frame["type"] == "resync_required"
    assert frame["epoch"] == epoch
    assert (
        frame["reason"]
        == {"stale_epoch": "epoch_mismatch", "too_old": "too_old", "ahead_of_log": "ahead_of_log"}[
            kind
        ]
    )
    # After a resync the stream continues live from the frame's position.
    await publish(topo, event("task_created", 1, audience=[u]))
    (ev,) = await r.events(1)
    assert ev["seq"] == frame["seq"] + 1
    await r.close()


async def test_acks_advance_cursor_and_trim_acked_events(topo: Topology) -> None:
    u = uid("ack")
    c = await WsClient.connect(topo, "gw-a", u, device="laptop")
    n = CHUNK + 5  # events are stored in chunks of CHUNK: the first chunk fills up
    for i in range(n):
        await publish(topo, event("task_updated", i, audience=[u]))
    got = await c.events(n)
    await c.send({"type": "ack", "seq": got[-1]["seq"]})

    def chunks() -> list[str]:
        pattern = f"sessions||UserSession||{u}||c:*"
        return sorted(k.rsplit("||", 1)[1] for k in redis_cli(topo, "--scan", "--pattern",
                                                                pattern).split())

    # The fully acknowledged chunk is deleted; the one holding the head stays until the log
    # moves past it (its records are below the tail, so they are never replayed).
    wait_until(lambda: chunks() == ["c:1"], 15, "acked chunk trimmed from Redis")
    meta = (await actor(topo, "UserSession", u, "inspect"))["meta"]
    assert meta["devices"]["laptop"]["seq"] == n
    assert meta["tail"] == n + 1 and meta["head"] == n
    await c.close()
