"""The store loses everything (Redis FLUSHALL; a Redis restart without persistence) while devices
are online and offline. Requirements (docs/reliability.md, State loss):

- a position the log cannot honour always gets `resync_required`: never an endless 4503, never a
  silent partial replay;
- a log that lost entries starts a new epoch (a new device is welcomed in it);
- events published after the wipe are delivered.

An actor that is active when the store is wiped still holds its whole retained log in memory, so
until it is deactivated it honours old positions exactly (a complete replay, checked seq by seq
and id by id): that is not a position the log cannot honour. Its next write stores meta plus only
the chunk it touched, so once it is reactivated the stored log misses chunks and it starts a new
epoch (actors/session_storage.py, LogLost): then every old position gets resync_required. A user
whose whole log fits in the one rewritten chunk gets it back complete, and keeps its epoch.
"""

import asyncio
import time
import uuid
from typing import Any

import websockets

from actors.session_storage import CHUNK
from devtools.topology import Topology
from tests.integration.harness import WsClient, event, publish, redis_cli
from tests.integration.test_failover import Device, wait_all

LONG = CHUNK + 8  # events per "long" user: more than one chunk, so a wipe loses a chunk for good
SHORT = 5  # one chunk: the active actor's next write restores it whole


async def connect(topo: Topology, gw: str, user: str, device: str,
                  since: str | None = None, within: float = 60) -> tuple[WsClient, int]:
    """Connect, retrying 4503 (store unavailable) for a bounded time: a wipe may make a few
    attempts fail, never all of them. Returns the client and how many 4503s it took."""
    unavailable = 0
    deadline = time.monotonic() + within
    while True:
        try:
            return await WsClient.connect(topo, gw, user, device=device, since=since), unavailable
        except websockets.ConnectionClosed as e:
            if e.rcvd is None or e.rcvd.code != 4503 or time.monotonic() > deadline:
                raise AssertionError(f"{user}/{device}: closed {e.rcvd} after "
                                     f"{unavailable} x 4503") from e
            unavailable += 1
            await asyncio.sleep(0.3)


async def first_frame(c: WsClient) -> dict[str, Any]:
    while True:
        f = await c.next_frame(15)
        if f.get("type") == "ping":
            await c.send({"type": "pong"})
            continue
        return f


async def resume(topo: Topology, user: str, device: str, pos: tuple[str, int],
                 after: list[str]) -> str:
    """Reconnect with an old position. Either resync_required, or a replay that is exactly the
    events after the position (`after`, the ids published since): anything else fails.
    Returns "resync" or "replay"."""
    epoch, seq = pos
    c, _ = await connect(topo, "gw-b", user, device, since=f"{epoch}:{seq}")
    try:
        w = c.welcome
        assert w["type"] == "welcome", w
        if not w["resumed"]:
            f = await first_frame(c)
            assert f["type"] == "resync_required", (user, w, f)
            assert f["epoch"] == w["epoch"], f
            assert f["epoch"] != epoch or f["reason"] != "epoch_mismatch", f
            return "resync"
        assert w["epoch"] == epoch and w["seq"] == seq, (user, w, pos)
        got = await c.events(len(after), timeout=20)
        assert [f["seq"] for f in got] == list(range(seq + 1, seq + 1 + len(after))), got
        assert sorted(f["id"] for f in got) == sorted(after), (user, got)
        # The wipe lost the shared broadcast log too: its stream may say so (a resync of that
        # stream, with the reason). Nothing else may follow the user stream's exact replay.
        extra = await c.quiet(0.3)
        assert all(f.get("reason") == "epoch_changed" for f in extra
                   if f.get("stream") == "broadcast"), extra
        assert not [f for f in extra if f.get("stream") != "broadcast"], "more than the log held"
        return "replay"
    finally:
        await c.close()


async def test_store_wiped_under_live_and_offline_devices(fault_topo: Topology) -> None:
    topo = fault_topo
    tag = uuid.uuid4().hex[:6]
    online = [f"sl-on-{tag}-{i}" for i in range(3)]
    off_long = [f"sl-long-{tag}-{i}" for i in range(3)]
    off_short = [f"sl-short-{tag}-{i}" for i in range(3)]
    counts = {**{u: LONG for u in online + off_long}, **{u: SHORT for u in off_short}}
    published: dict[str, list[str]] = {u: [] for u in counts}

    async def burst(users: list[str], n: int) -> None:
        for i in range(n):
            for u in users:
                ev = event("task_updated", i, audience=[u])
                published[u].append(ev["event_id"])
                await publish(topo, ev)

    live: dict[str, list[Device]] = {}
    for u in online:
        a, _ = await connect(topo, "gw-a", u, "a")
        b, _ = await connect(topo, "gw-b", u, "b")
        live[u] = [Device(a), Device(b)]
    every = [d for ds in live.values() for d in ds]
    positions: dict[str, tuple[str, int]] = {}
    try:
        # Offline devices: connect once (activates the actor), take their events, go away.
        offline = {u: await connect(topo, "gw-a", u, "x") for u in off_long + off_short}
        await burst(online + off_long, LONG - SHORT)
        await burst(list(counts), SHORT)
        for u, (c, _) in offline.items():
            got = await c.events(counts[u], timeout=30)
            positions[u] = (c.welcome["epoch"], got[-1]["seq"])
            await c.close()
        await wait_all(every, LONG, 60, "events before the wipe")
        old_epoch = {u: live[u][0].c.welcome["epoch"] for u in online}

        # --- wipe 1: FLUSHALL with every actor active ------------------------------------
        assert redis_cli(topo, "FLUSHALL").strip() == "OK"
        before = {u: len(published[u]) for u in counts}
        await burst(list(counts), 3)
        # Online devices keep receiving (the active actors continue their log from memory).
        await wait_all(every, LONG + 3, 60, "events after the wipe (online)")
        for d in every:
            assert [f["seq"] for f in d.events] == list(range(1, LONG + 4)), d.events
            assert not [f for f in d.other if f.get("type") == "resync_required"], d.other
        # Offline devices: an exact, complete replay from memory, or resync_required.
        outcome = {}
        for u in off_long + off_short:
            pos = positions[u]
            outcome[u] = await resume(topo, u, "x", pos, published[u][pos[1]:])
        # A device that never connected starts at the head of the current log.
        fresh, _ = await connect(topo, "gw-a", off_long[0], "new1")
        assert fresh.welcome["epoch"] == positions[off_long[0]][0]  # still the in-memory log
        await fresh.close()

        # --- the sessions hosts restart: every actor is rebuilt from the wiped store --------
        for d in every:
            await d.close()
        await asyncio.to_thread(topo.stop_app, "sessions")
        await asyncio.to_thread(topo.start_app, "sessions")
        await asyncio.to_thread(topo.wait_app, "sessions", 120)
        after_restart = {}
        for u in online + off_long + off_short:
            dev, pos = ("a", (old_epoch[u], LONG + 3)) if u in online else ("x", positions[u])
            after_restart[u] = await resume(topo, u, dev, pos, published[u][pos[1]:])
        # Users with more than one chunk lost events for good: new epoch, resync for everyone.
        for u in online + off_long:
            assert after_restart[u] == "resync", (u, after_restart)
        # One-chunk users got their whole log back from the active actor's write.
        for u in off_short:
            assert after_restart[u] in ("resync", "replay"), after_restart
        # A new device is welcomed in the NEW epoch; new events reach it and the old devices.
        u = off_long[0]
        fresh, _ = await connect(topo, "gw-a", u, "new2")
        assert fresh.welcome["epoch"] != positions[u][0], fresh.welcome
        old, _ = await connect(topo, "gw-b", u, "x")
        await burst([u], 2)
        for c in (fresh, old):
            got = await c.events(2, timeout=30)
            assert sorted(f["id"] for f in got) == sorted(published[u][-2:]), got
            await c.close()
        print(f"wipe with actors active: offline outcomes {outcome}; after host restart "
              f"{after_restart}; published before wipe {before}")
    finally:
        for d in every:
            await d.close()


async def test_redis_restart_without_persistence_while_hosts_are_down(
    fault_topo: Topology,
) -> None:
    """Every actor inactive when the store comes back empty: each log starts from nothing, so
    every old position gets resync_required (epoch_mismatch) and a new device a new epoch. Also
    covers daprd reconnecting to a restarted Redis and re-creating the pub/sub consumer group
    (new events are delivered)."""
    topo = fault_topo
    tag = uuid.uuid4().hex[:6]
    users = [f"rr-{tag}-{i}" for i in range(4)]
    positions: dict[str, tuple[str, int]] = {}
    for u in users:
        c, _ = await connect(topo, "gw-a", u, "x")
        for i in range(3):
            await publish(topo, event("task_updated", i, audience=[u]))
        got = await c.events(3, timeout=30)
        positions[u] = (c.welcome["epoch"], got[-1]["seq"])
        await c.close()
    await asyncio.to_thread(topo.stop_app, "sessions")
    assert topo.redis is not None
    topo.redis.kill()
    topo.redis_aof = False  # comes back empty: no AOF replay
    try:
        await asyncio.to_thread(topo.start_redis)
        # Empty but for what the running gateways re-create at once (the stream, its group).
        assert redis_cli(topo, "--scan", "--pattern", "sessions||*").strip() == ""
        await asyncio.to_thread(topo.start_app, "sessions")
        await asyncio.to_thread(topo.wait_app, "sessions", 120)
        await asyncio.to_thread(topo.wait_app, "gateway", 120)
        for u in users:
            assert await resume(topo, u, "x", positions[u], []) == "resync", u
        u = users[0]
        fresh, _ = await connect(topo, "gw-b", u, "new")
        assert fresh.welcome["epoch"] != positions[u][0]
        old, _ = await connect(topo, "gw-a", u, "x")
        ids = []
        for i in range(3):
            ev = event("task_updated", 100 + i, audience=[u])
            ids.append(ev["event_id"])
            await publish(topo, ev)
        for c in (fresh, old):
            got = await c.events(3, timeout=60)
            assert sorted(f["id"] for f in got) == sorted(ids), got
            await c.close()
    finally:
        topo.redis_aof = True
