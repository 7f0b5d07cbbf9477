"""Fan-out of topic batches in-process (Hub + Fanout on the in-memory sessions backend): order per
user, dedupe, one actor call per user per batch, one forward per replica per batch, and a failed
item retried alone without a duplicate reaching a client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.session_core import IncomingEvent, Limits
from gateway.config import Settings
from gateway.connection import Connection
from gateway.fanout import Fanout
from gateway.forwards import ForwardBatch
from gateway.hub import Hub
from gateway.peers import PeerUnavailable
from gateway.release_timers import ReleaseTimers
from gateway.sessions_memory import MemorySessions, World
from gateway.topic_schema import TaskEvent


class LoopbackPeers:
    """Forwards handed straight to the other replica's Fanout (no network)."""

    def __init__(self) -> None:
        self.fanouts: dict[str, Fanout] = {}
        self.down: set[str] = set()
        self.sent: list[tuple[str, int]] = []  # (url, items)

    async def send(self, base_url: str, batch: ForwardBatch) -> None:
        if base_url in self.down:
            raise PeerUnavailable(f"{base_url} is down")
        self.sent.append((base_url, len(batch.items)))
        self.fanouts[base_url].receive_forward(batch)

    async def close(self) -> None:
        pass


class Cluster:
    def __init__(self, limits: Limits | None = None) -> None:
        self.world = World(limits or Limits(max_events=500))
        self.peers = LoopbackPeers()
        self.hubs: dict[str, Hub] = {}
        self.fanouts: dict[str, Fanout] = {}
        for r in ("gw-a", "gw-b"):
            settings = Settings(replica_id=r, advertise_url=f"mem://{r}", tail_check_s=0.05)
            sessions = MemorySessions(r, self.world)
            hub = Hub(settings, sessions)
            fanout = Fanout(settings, sessions, hub, self.peers)  # type: ignore[arg-type]
            self.hubs[r], self.fanouts[r] = hub, fanout
            self.peers.fanouts[f"mem://{r}"] = fanout

    async def start(self) -> None:
        for hub in self.hubs.values():
            await hub.heartbeat()
        for hub in self.hubs.values():
            await hub.heartbeat()  # everyone sees everyone

    async def connect(self, replica: str, user: str) -> Connection:
        hub = self.hubs[replica]
        conn = hub.new_connection(user, f"dev-{user}-{replica}", "websocket", 1e12)
        page = await hub.register(conn, None)
        await hub.replay(conn, page)
        return conn


def frames(conn: Connection) -> list[dict[str, Any]]:
    out = []
    while not conn.queue.empty():
        frame, _ = conn.queue.get_nowait()
        if "seq" in frame and "data" in frame:
            out.append(frame)
    return out


def ev(n: int, user: str, eid: str | None = None) -> TaskEvent:
    event = IncomingEvent(eid or f"e{n}", "task_updated", {"id": n}, str(n), None)
    return TaskEvent(event, (user,))


@pytest.fixture
async def cluster() -> Cluster:
    c = Cluster()
    await c.start()
    return c


async def test_one_call_per_user_and_order_kept(cluster: Cluster) -> None:
    a = await cluster.connect("gw-a", "alice")
    b = await cluster.connect("gw-b", "bob")
    frames(a), frames(b)
    batch = [ev(1, "alice"), ev(2, "bob"), ev(3, "alice"), ev(4, "alice"), ev(5, "bob")]
    cluster.world.calls.clear()
    assert await cluster.fanouts["gw-a"].handle_batch(batch) == [True] * 5
    delivers = [c for c in cluster.world.calls if c[1] == "deliver"]
    assert sorted(delivers) == [("alice", "deliver"), ("bob", "deliver")]
    assert [(f["seq"], f["id"]) for f in frames(a)] == [(1, "e1"), (2, "e3"), (3, "e4")]
    assert [(f["seq"], f["id"]) for f in frames(b)] == [(1, "e2"), (2, "e5")]
    # bob lives on gw-b: exactly one forward for the whole batch, carrying both of his events.
    assert cluster.peers.sent == [("mem://gw-b", 2)]


async def test_duplicates_in_a_batch_and_redelivered_batches_reach_no_client_twice(
    cluster: Cluster,
) -> None:
    a = await cluster.connect("gw-a", "alice")
    frames(a)
    batch = [ev(1, "alice"), ev(1, "alice"), ev(2, "alice")]
    assert await cluster.fanouts["gw-b"].handle_batch(batch) == [True] * 3
    assert await cluster.fanouts["gw-a"].handle_batch(batch) == [True] * 3  # redelivered
    assert [(f["seq"], f["id"]) for f in frames(a)] == [(1, "e1"), (2, "e2")]


async def test_a_failed_item_is_retried_alone_without_duplicates(cluster: Cluster) -> None:
    a = await cluster.connect("gw-a", "alice")
    b = await cluster.connect("gw-a", "bob")
    frames(a), frames(b)
    cluster.world.fail("bob", "deliver")
    batch = [ev(1, "alice"), ev(2, "bob"), ev(3, "alice")]
    assert await cluster.fanouts["gw-a"].handle_batch(batch) == [True, False, True]
    assert [f["id"] for f in frames(a)] == ["e1", "e3"]
    assert frames(b) == []
    # Dapr redelivers only the failed entry.
    assert await cluster.fanouts["gw-a"].handle_batch([batch[1]]) == [True]
    assert [(f["seq"], f["id"]) for f in frames(b)] == [(1, "e2")]
    assert frames(a) == []


async def test_a_failed_forward_does_not_hold_up_the_message_and_is_sent_again(
    cluster: Cluster,
) -> None:
    a = await cluster.connect("gw-a", "alice")
    b = await cluster.connect("gw-b", "bob")
    frames(a), frames(b)
    cluster.peers.down.add("mem://gw-b")
    batch = [ev(1, "alice"), ev(2, "bob")]
    # Recorded for both: acknowledged at once (no RETRY stalling this replica's intake).
    assert await cluster.fanouts["gw-a"].handle_batch(batch) == [True, True]
    assert [f["id"] for f in frames(a)] == ["e1"]
    # The forward is sent again in the background and lands once bob's replica answers again.
    cluster.peers.down.clear()
    async with asyncio.timeout(3):
        while b.queue.empty():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert [(f["seq"], f["id"]) for f in frames(b)] == [(1, "e2")]
    assert cluster.fanouts["gw-a"].forward_failures == 1



async def test_a_user_on_both_replicas_gets_each_event_once_on_each(cluster: Cluster) -> None:
    a1 = await cluster.connect("gw-a", "carol")
    a2 = await cluster.connect("gw-b", "carol")
    frames(a1), frames(a2)
    # Two batches consumed by different replicas, concurrently.
    await asyncio.gather(
        cluster.fanouts["gw-a"].handle_batch([ev(1, "carol"), ev(3, "carol")]),
        cluster.fanouts["gw-b"].handle_batch([ev(2, "carol")]),
    )
    for conn in (a1, a2):
        got = frames(conn)
        assert [f["seq"] for f in got] == [1, 2, 3]
        assert len({f["id"] for f in got}) == 3


def vev(task: int, version: int, user: str, type_: str = "task_updated", eid: str = ""
        ) -> TaskEvent:
    data = {"id": task, "version": version}
    event = IncomingEvent(eid or f"t{task}v{version}", type_, data, str(task), None, version)
    return TaskEvent(event, (user,))


async def test_per_task_order_held_acknowledged_released_stale_dropped(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    a = await cluster.connect("gw-a", "dave")
    b = await cluster.connect("gw-b", "dave")
    frames(a), frames(b)
    cluster.world.clock = 100.0
    fan, other = cluster.fanouts["gw-a"], cluster.fanouts["gw-b"]
    # v3 before v2 inside one batch: the actor records v2, then v3 in the same turn.
    batch = [vev(1, 1, "dave", "task_created"), vev(1, 3, "dave"), vev(1, 2, "dave")]
    assert await fan.handle_batch(batch) == [True] * 3
    # v5 with v4 missing: held by the actor, the message acknowledged (never RETRY); one release
    # timer for dave on this replica, also when Dapr delivers the message twice.
    assert await fan.handle_batch([vev(1, 5, "dave")]) == [True]
    assert await fan.handle_batch([vev(1, 5, "dave")]) == [True]
    assert list(cluster.world.sessions["dave"].meta.order.held) == ["t1v5"]
    assert (fan.held, len(fan.release_timers), len(other.release_timers)) == (2, 1, 0)
    # v4 comes to the other replica: its turn records v4 and releases v5, and that replica
    # routes both (to its own device and, forwarded, to gw-a's), v4 first.
    assert await other.handle_batch([vev(1, 4, "dave")]) == [True]
    assert other.released == 1 and cluster.world.sessions["dave"].meta.order.held == {}
    # A redelivered, already recorded event is a duplicate (dedup comes first), not stale.
    assert await fan.handle_batch([vev(1, 2, "dave")]) == [True]
    assert cluster.world.sessions["dave"].meta.order.stale == 0
    # An old title published again (another event id) after a new one: stale, logged, dropped.
    with caplog.at_level("INFO", logger="gateway.fanout"):
        assert await fan.handle_batch([vev(1, 2, "dave", eid="old2"),
                                       vev(1, 1, "dave", eid="old1")]) == [True, True]
    assert "stale event old2 for dave: task 1 version 2 <= newest 5" in caplog.text
    # Without the missing v6 the hold ends: the next deliver for dave, from any replica, records
    # v7 first (released, seq 6), then its own event; v6 arriving later is stale.
    assert await fan.handle_batch([vev(1, 7, "dave")]) == [True]
    cluster.world.clock += cluster.world.limits.hold_s
    assert await other.handle_batch([ev(50, "dave")]) == [True]
    assert await fan.handle_batch([vev(1, 6, "dave")]) == [True]
    for conn in (a, b):
        got = frames(conn)
        assert [f["data"].get("version") for f in got] == [1, 2, 3, 4, 5, 7, None]
        assert [f["seq"] for f in got] == [1, 2, 3, 4, 5, 6, 7]
    assert (fan.held, fan.stale, other.released) == (3, 3, 2)
    assert cluster.world.sessions["dave"].meta.order.stale == 3
    for f in (fan, other):
        f.close()
    assert len(fan.release_timers) == 0


async def test_release_timer_records_a_held_event_without_another_publish() -> None:
    c = Cluster(Limits(max_events=500, hold_s=0.05))
    await c.start()
    a = await c.connect("gw-a", "erin")
    b = await c.connect("gw-b", "erin")
    frames(a), frames(b)
    fan = c.fanouts["gw-a"]
    assert await fan.handle_batch([vev(1, 1, "erin", "task_created"), vev(1, 3, "erin")]) == [
        True, True]
    assert fan.release_timers.busy
    for _ in range(200):
        if not fan.release_timers.busy:
            break
        await asyncio.sleep(0.01)
    assert fan.release_timers.fired == 1 and not fan.release_timers.busy
    assert c.world.calls[-1] == ("erin", "deliver")  # the release turn: a deliver, no events
    for conn in (a, b):
        got = frames(conn)
        assert [(f["seq"], f["data"]["version"]) for f in got] == [(1, 1), (2, 3)]
    # v2 after the hold: stale, acknowledged, shown nowhere.
    assert await c.fanouts["gw-b"].handle_batch([vev(1, 2, "erin")]) == [True]
    assert frames(a) == frames(b) == [] and c.world.sessions["erin"].meta.order.stale == 1


async def test_a_timer_that_finds_the_gap_filled_routes_nothing_twice() -> None:
    c = Cluster(Limits(max_events=500, hold_s=0.05))
    await c.start()
    a = await c.connect("gw-a", "fay")
    frames(a)
    fan = c.fanouts["gw-a"]
    assert await fan.handle_batch([vev(1, 2, "fay")]) == [True]  # held: v1 missing
    assert await c.fanouts["gw-b"].handle_batch([vev(1, 1, "fay", "task_created")]) == [True]
    assert [f["data"]["version"] for f in frames(a)] == [1, 2]  # released by gw-b's turn
    c.world.fail("fay", "deliver")  # the timer's release turn fails once: tried again later
    for _ in range(300):
        if not fan.release_timers.busy:
            break
        await asyncio.sleep(0.01)
    # gw-a's timer still fired (it can't know): failed once, tried again, found nothing due.
    assert fan.release_timers.fired == 2 and c.world.calls[-2:] == [("fay", "deliver")] * 2
    assert frames(a) == [] and fan.released == 0


async def test_a_held_event_redelivered_after_its_hold_is_routed_once(cluster: Cluster) -> None:
    a = await cluster.connect("gw-a", "gus")
    frames(a)
    cluster.world.clock = 100.0
    fan = cluster.fanouts["gw-a"]
    assert await fan.handle_batch([vev(1, 2, "gus")]) == [True]  # held: v1 missing
    cluster.world.clock += cluster.world.limits.hold_s
    # Dapr delivers the same message again after the hold: the turn releases it first, then
    # finds its own event a duplicate; the answer lists it once.
    assert await fan.handle_batch([vev(1, 2, "gus")]) == [True]
    assert [(f["seq"], f["data"]["version"]) for f in frames(a)] == [(1, 2)]
    assert fan.released == 0
    fan.close()


async def test_release_timers_are_one_per_user_bounded_and_closed() -> None:
    fired: list[str] = []

    async def fire(user: str) -> None:
        fired.append(user)

    timers = ReleaseTimers(fire, limit=2, margin_s=0.0)
    timers.arm("u1", 0.05)
    timers.arm("u1", 0.5)  # later than the pending one: kept as it is
    timers.arm("u2", 0.5)
    timers.arm("u3", 0.01)  # over the limit: not scheduled
    assert (len(timers), timers.skipped) == (2, 1)
    timers.arm("u2", 0.02)  # sooner: replaces
    await asyncio.sleep(0.1)
    assert sorted(fired) == ["u1", "u2"] and not timers.busy
    timers.arm("u1", 0.01)
    timers.close()
    timers.arm("u2", 0.01)
    await asyncio.sleep(0.05)
    assert sorted(fired) == ["u1", "u2"] and len(timers) == 0


async def test_messages_delivered_one_per_request_reach_the_actors_in_batches(
    cluster: Cluster,
) -> None:
    """Without bulk subscribe daprd sends one message per request; the ones that arrive together
    (or while a batch is in flight) share a batch: one actor call per user, order kept."""
    a = await cluster.connect("gw-a", "alice")
    frames(a)
    fan = cluster.fanouts["gw-a"]
    cluster.world.calls.clear()
    calls_before = fan.actor_calls
    await asyncio.gather(*(fan.handle(ev(n, "alice")) for n in range(1, 6)))
    assert fan.actor_calls - calls_before == 1
    assert [c for c in cluster.world.calls if c[1] == "deliver"] == [("alice", "deliver")]
    assert [(f["seq"], f["id"]) for f in frames(a)] == [(n, f"e{n}") for n in range(1, 6)]


def break_fan_out(fan: Fanout, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch fails with a bug (not a transient failure)."""
    async def broken(batch: Any) -> list[bool]:
        raise KeyError("a bug")

    monkeypatch.setattr(fan, "handle_batch", broken)


async def test_a_bug_in_a_coalesced_batch_fails_every_message_and_is_counted_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fan = cluster.fanouts["gw-a"]
    break_fan_out(fan, monkeypatch)
    results = await asyncio.gather(*(fan.handle(ev(n, "zed")) for n in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, KeyError) for r in results)
    assert fan.bugs == 1
