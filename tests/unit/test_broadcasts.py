"""The shared broadcast stream: the pure per-replica feed (table tests), then Hub + Fanout on the
in-memory sessions backend with two replicas: one log turn per broadcast batch, one forward per
other replica, exact resume from memory or from the log, resync when the log can't continue,
filters, and a lost forward healed by the heartbeat's check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from actors.contract import ReadAnswer
from actors.session_core import EventRecord, Filters, IncomingEvent, Limits
from gateway import protocol
from gateway.broadcast_feed import BroadcastFeed
from gateway.connection import Connection
from gateway.hub import Hub
from gateway.topic_schema import TaskEvent
from tests.unit.test_fanout_batches import Cluster
from vocab.ids import BROADCAST_LOG, USER_ID_RE
from vocab.position import Position


def rec(seq: int) -> EventRecord:
    return EventRecord(seq, f"b{seq}", "task_created", {"n": seq}, f"t{seq}", "l1", 0.0)


# -- the feed, pure ------------------------------------------------------------------------------
# (name, learned (epoch, head) or None, offers (epoch, seq), released seqs, the feed's epoch after)
FEED: list[tuple[str, tuple[str, int] | None, list[tuple[str, int]], list[int], str]] = [
    ("in order", ("e", 0), [("e", 1), ("e", 2)], [1, 2], "e"),
    ("held until the gap fills", ("e", 0), [("e", 2), ("e", 3), ("e", 1)], [1, 2, 3], "e"),
    ("duplicates and old records dropped", ("e", 5), [("e", 5), ("e", 6), ("e", 6), ("e", 2)],
     [6], "e"),
    ("unknown feed starts just before the first record", None, [("e", 9), ("e", 10)], [9, 10],
     "e"),
    ("another epoch starts over before its record", ("e", 4), [("f", 3), ("f", 4)], [3, 4], "f"),
    ("a learned head in the same epoch changes nothing", ("e", 2), [("e", 3)], [3], "e"),
]


@pytest.mark.parametrize(("name", "learned", "offers", "released", "epoch"), FEED,
                         ids=[f[0] for f in FEED])
def test_feed_orders(name: str, learned: tuple[str, int] | None, offers: list[tuple[str, int]],
                     released: list[int], epoch: str) -> None:
    feed = BroadcastFeed(ring=8)
    if learned is not None:
        feed.learn(*learned)
        feed.learn(learned[0], learned[1] + 5)  # same epoch: no jump past unseen records
    out: list[int] = []
    for e, seq in offers:
        out += [r.seq for r in feed.offer(e, rec(seq), 0.0)]
    assert out == released
    assert feed.epoch == epoch
    assert not feed.has_gap()


# (name, since, what memory answers: seqs, or None = read the log)
SINCE: list[tuple[str, Position, list[int] | None]] = [
    ("within the ring", Position("e", 7), [8, 9, 10]),
    ("at the head", Position("e", 10), []),
    ("ahead of this replica", Position("e", 12), []),
    ("just before the ring", Position("e", 6), [7, 8, 9, 10]),
    ("older than the ring", Position("e", 5), None),
    ("another epoch", Position("old", 8), None),
]


@pytest.mark.parametrize(("name", "since", "expected"), SINCE, ids=[s[0] for s in SINCE])
def test_feed_serves_resumes_from_memory_only_when_it_covers_them(
    name: str, since: Position, expected: list[int] | None
) -> None:
    feed = BroadcastFeed(ring=4)
    feed.learn("e", 0)
    for seq in range(1, 11):
        feed.offer("e", rec(seq), 0.0)
    got = feed.since(since)
    assert (None if got is None else [r.seq for r in got]) == expected


def test_the_log_id_is_no_user_id() -> None:
    assert USER_ID_RE.fullmatch(BROADCAST_LOG) is None


# -- two replicas, in-memory actors ---------------------------------------------------------------
def bc(n: int, **kw: Any) -> TaskEvent:
    return TaskEvent(IncomingEvent(f"b{n}", kw.get("type", "task_created"), {"n": n}, f"t{n}",
                                   kw.get("list_id")), None)


def bframes(conn: Connection) -> list[dict[str, Any]]:
    out = []
    while not conn.queue.empty():
        out_frame, _ = conn.queue.get_nowait()
        frame = protocol.body(out_frame)
        if "bseq" in frame or frame.get("type") in ("welcome", "resync_required"):
            out.append(frame)
    return out


def bseqs(conn: Connection) -> list[int]:
    return [f["bseq"] for f in bframes(conn) if "bseq" in f and "data" in f]


@pytest.fixture
async def cluster() -> Cluster:
    c = Cluster(Limits(max_events=50))
    await c.start()
    return c


async def test_one_log_turn_per_batch_and_one_forward_per_replica(cluster: Cluster) -> None:
    conns = [await cluster.connect(r, f"u{i}") for i in range(6) for r in ("gw-a", "gw-b")]
    for c in conns:
        bframes(c)
    cluster.world.calls.clear()
    assert await cluster.fanouts["gw-a"].handle_batch([bc(1), bc(2), bc(3)]) == [True] * 3
    # One actor turn for the whole batch, none per user; one forward batch to gw-b.
    assert cluster.world.calls == [(BROADCAST_LOG, "deliver")]
    assert cluster.peers.sent == [("mem://gw-b", 3)]
    for c in conns:
        assert bseqs(c) == [1, 2, 3]


async def test_a_redelivered_broadcast_reaches_nobody_twice(cluster: Cluster) -> None:
    a = await cluster.connect("gw-a", "ann")
    bframes(a)
    for fanout in ("gw-b", "gw-a", "gw-b"):
        assert await cluster.fanouts[fanout].handle_batch([bc(1), bc(2)]) == [True, True]
    assert bseqs(a) == [1, 2]


async def test_resume_after_missed_broadcasts_from_memory_then_from_the_log(
    cluster: Cluster,
) -> None:
    a = await cluster.connect("gw-a", "ann")
    welcome = bframes(a)[0]
    since = f"{welcome['epoch']}:{welcome['seq']},{welcome['bepoch']}:{welcome['bseq']}"
    await cluster.hubs["gw-a"].remove(a)
    await cluster.fanouts["gw-b"].handle_batch([bc(n) for n in range(1, 6)])
    for replica in ("gw-a", "gw-b"):
        cluster.world.calls.clear()
        back = cluster.hubs[replica].new_connection("ann", "dev-ann", "websocket", 1e12)
        page = await cluster.hubs[replica].register(back, since)
        await cluster.hubs[replica].replay(back, page)
        assert bseqs(back) == [1, 2, 3, 4, 5], replica  # exactly the missed ones, in order
        assert (BROADCAST_LOG, "read") not in cluster.world.calls  # the ring served it
        await cluster.hubs[replica].remove(back)
    # A ring that no longer covers the point: read from the log, same answer.
    hub = cluster.hubs["gw-a"]
    hub.broadcasts.feed = BroadcastFeed(ring=2)
    back = hub.new_connection("ann", "dev-ann", "websocket", 1e12)
    cluster.world.calls.clear()
    await hub.replay(back, await hub.register(back, since))
    assert bseqs(back) == [1, 2, 3, 4, 5]
    assert (BROADCAST_LOG, "read") in cluster.world.calls


async def test_a_point_the_log_no_longer_holds_gets_resync_required(cluster: Cluster) -> None:
    a = await cluster.connect("gw-a", "ann")
    w = bframes(a)[0]
    since = f"{w['epoch']}:{w['seq']},{w['bepoch']}:{w['bseq']}"
    await cluster.hubs["gw-a"].remove(a)
    await cluster.fanouts["gw-a"].handle_batch([bc(n) for n in range(1, 61)])  # keeps 50
    hub = cluster.hubs["gw-b"]
    hub.broadcasts.feed = BroadcastFeed(ring=4)
    back = hub.new_connection("ann", "dev-ann", "websocket", 1e12)
    await hub.replay(back, await hub.register(back, since))
    frames = bframes(back)
    resync = [f for f in frames if f["type"] == "resync_required"]
    assert resync == [{"type": "resync_required", "epoch": w["bepoch"], "seq": 60,
                       "reason": "too_old", "stream": "broadcast"}]
    assert [f for f in frames if "data" in f] == []
    await cluster.fanouts["gw-a"].handle_batch([bc(61)])
    assert bseqs(back) == [61]  # and it goes on from there


async def test_filters_of_the_connection_and_of_the_user_apply(cluster: Cluster) -> None:
    plain = await cluster.connect("gw-a", "ann")
    narrow = await cluster.connect("gw-a", "bob")
    narrow.conn_filter = Filters(types=frozenset({"task_deleted"}))
    await cluster.hubs["gw-b"].sessions.set_filters("cat", Filters(list_ids=frozenset({"l2"})))
    cat = await cluster.connect("gw-b", "cat")
    for c in (plain, narrow, cat):
        bframes(c)
    batch = [bc(1), bc(2, type="task_deleted"), bc(3, list_id="l2")]
    await cluster.fanouts["gw-a"].handle_batch(batch)
    assert bseqs(plain) == [1, 2, 3]
    assert bseqs(narrow) == [2]
    assert bseqs(cat) == [3]


async def test_a_lost_forward_is_filled_by_the_heartbeat_check(cluster: Cluster) -> None:
    b = await cluster.connect("gw-b", "bob")
    bframes(b)
    cluster.peers.down.add("mem://gw-b")
    await cluster.fanouts["gw-a"].handle_batch([bc(1), bc(2)])
    assert bseqs(b) == []
    cluster.peers.down.clear()
    cluster.fanouts["gw-a"].close()
    await cluster.hubs["gw-b"].broadcasts.check()  # what the heartbeat runs
    assert bseqs(b) == [1, 2]


# -- races found in review: a read in flight while live broadcasts or a new epoch arrive ---------
def point(w: dict[str, Any]) -> str:
    return f"{w['epoch']}:{w['seq']},{w['bepoch']}:{w['bseq']}"


def lose_the_log(cluster: Cluster) -> None:
    """The broadcast log's state is gone (store wiped, actor deactivated): a new epoch."""
    cluster.world.sessions.pop(BROADCAST_LOG, None)
    cluster.world.store.pop(BROADCAST_LOG, None)


def during_log_reads(hub: Hub, then: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run `then` while each read of the broadcast log is on its way back; returns the undo."""
    sessions = hub.broadcasts.sessions
    orig = sessions.read

    async def read(user: str, epoch: str, after: int, limit: int = 500) -> ReadAnswer:
        answer = await orig(user, epoch, after, limit)
        if user == BROADCAST_LOG:
            await then()
        return answer

    sessions.read = read  # type: ignore[method-assign]
    return lambda: setattr(sessions, "read", orig)


async def test_a_live_broadcast_during_a_resync_read_is_not_lost(cluster: Cluster) -> None:
    a = await cluster.connect("gw-a", "ann")
    since = point(bframes(a)[0])
    await cluster.hubs["gw-a"].remove(a)
    await cluster.fanouts["gw-a"].handle_batch([bc(n) for n in range(1, 61)])  # log keeps 50
    hub = cluster.hubs["gw-b"]
    hub.broadcasts.feed = BroadcastFeed(ring=4)  # the resume must read the log
    hub.broadcasts.feed.learn(cluster.world.sessions[BROADCAST_LOG].meta.epoch, 60)
    undo = during_log_reads(hub, lambda: cluster.fanouts["gw-a"].handle_batch([bc(61)]))
    back = hub.new_connection("ann", "dev-ann", "websocket", 1e12)
    await hub.replay(back, await hub.register(back, since))
    undo()
    await cluster.fanouts["gw-a"].handle_batch([bc(62)])
    frames = bframes(back)
    assert [f.get("reason") for f in frames if f["type"] == "resync_required"] == ["too_old"]
    assert [f["bseq"] for f in frames if "data" in f] == [61, 62]  # no gap after the resync


async def test_a_new_epoch_during_the_resume_read_never_moves_the_stream_back(
    cluster: Cluster,
) -> None:
    a = await cluster.connect("gw-a", "ann")
    since = point(bframes(a)[0])
    await cluster.hubs["gw-a"].remove(a)
    await cluster.fanouts["gw-a"].handle_batch([bc(1), bc(2)])
    lose_the_log(cluster)
    await cluster.fanouts["gw-a"].handle_batch([bc(101)])  # new epoch, seq 1
    hub = cluster.hubs["gw-b"]
    undo = during_log_reads(hub, lambda: cluster.fanouts["gw-a"].handle_batch([bc(102)]))
    back = hub.new_connection("ann", "dev-ann", "websocket", 1e12)
    await hub.replay(back, await hub.register(back, since))
    undo()
    await cluster.fanouts["gw-a"].handle_batch([bc(n) for n in range(103, 106)])
    frames = bframes(back)
    got = [(f["bseq"], f["id"]) for f in frames if "data" in f]
    assert got[-3:] == [(3, "b103"), (4, "b104"), (5, "b105")], got
    assert back.bcursor is not None and back.bcursor.held == 0


async def test_ring_records_of_an_old_epoch_are_never_sent_as_new_ones() -> None:
    cluster = Cluster(Limits(max_events=500))
    await cluster.start()
    hub = cluster.hubs["gw-a"]
    a = await cluster.connect("gw-a", "ann")
    since = point(bframes(a)[0])
    await hub.remove(a)
    await cluster.fanouts["gw-a"].handle_batch([bc(n) for n in range(1, 6)])  # in the ring
    back = hub.new_connection("ann", "dev-ann", "websocket", 1e12)
    page = await hub.register(back, since)
    lose_the_log(cluster)  # between the welcome and the replay: a new epoch goes live
    await cluster.fanouts["gw-a"].handle_batch([bc(101)])
    await hub.replay(back, page)
    await cluster.fanouts["gw-a"].handle_batch([bc(102), bc(103)])
    got = [(f["bseq"], f["id"]) for f in bframes(back) if "data" in f]
    assert got == [(1, "b101"), (2, "b102"), (3, "b103")], got


async def test_a_stale_log_page_never_takes_the_feed_back_to_the_old_epoch(
    cluster: Cluster,
) -> None:
    hub = cluster.hubs["gw-b"]
    b = await cluster.connect("gw-b", "bob")
    bframes(b)
    await cluster.fanouts["gw-a"].handle_batch([bc(1), bc(2)])
    cluster.peers.down.add("mem://gw-b")
    await cluster.fanouts["gw-a"].handle_batch([bc(3)])  # gw-b misses it: the check's page has it
    cluster.peers.down.clear()
    cluster.fanouts["gw-a"].close()

    async def new_epoch_goes_live() -> None:
        lose_the_log(cluster)
        await cluster.fanouts["gw-a"].handle_batch([bc(101)])

    undo = during_log_reads(hub, new_epoch_goes_live)
    await hub.broadcasts.check()
    undo()
    assert hub.broadcasts.feed.epoch == cluster.world.sessions[BROADCAST_LOG].meta.epoch
    resyncs = [f for f in bframes(b) if f["type"] == "resync_required"]
    assert [f["epoch"] for f in resyncs] == [hub.broadcasts.feed.epoch]  # once, forward only


async def test_a_user_filter_set_during_register_is_kept(cluster: Cluster) -> None:
    hub = cluster.hubs["gw-a"]
    hub.broadcasts.feed = BroadcastFeed()  # unknown: start() awaits a read
    new = Filters(types=frozenset({"task_deleted"}))

    async def subscribe() -> None:  # what FrameHandler does for a user-scope subscribe
        await hub.sessions.set_filters("ann", new)
        hub.set_user_filter("ann", new)

    conn = hub.new_connection("ann", "dev-ann", "websocket", 1e12)
    undo = during_log_reads(hub, subscribe)
    await hub.register(conn, None)
    undo()
    assert conn.user_filter == new
