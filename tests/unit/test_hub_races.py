"""Hub races in-process on the in-memory backend: a lost tail, a gap held then filled from the
log, the resume seam while events keep coming, and a graceful drain."""

from __future__ import annotations

import asyncio

from actors.session_core import IncomingEvent, Limits
from gateway import protocol
from gateway.config import Settings
from gateway.connection import Connection
from gateway.hub import Hub
from gateway.sessions_memory import MemorySessions, World


def make_hub(world: World, **settings: float) -> Hub:
    s = Settings(replica_id="gw-a", advertise_url="mem://gw-a", **settings)
    return Hub(s, MemorySessions("gw-a", world))


async def connect(hub: Hub, user: str, since: str | None = None) -> Connection:
    conn = hub.new_connection(user, f"dev-{user}", "websocket", 1e12)
    page = await hub.register(conn, since)
    await hub.replay(conn, page)
    return conn


async def events(conn: Connection, n: int, limit_s: float = 2.0) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    async with asyncio.timeout(limit_s):
        while len(out) < n:
            frame, _ = await conn.next_out()
            body = protocol.body(frame)
            if "seq" in body and "data" in body:
                out.append(body)
    return out


def ev(eid: str) -> IncomingEvent:
    return IncomingEvent(eid, "task_updated", {"id": eid}, None, None)


async def append(hub: Hub, user: str, *ids: str) -> list[int]:
    answer = await hub.sessions.deliver(user, [ev(i) for i in ids], hub.liveness)
    return [r.seq for r in answer.results]


async def test_a_lost_last_forward_is_found_by_the_tail_check() -> None:
    world = World(Limits())
    hub = make_hub(world, tail_check_s=0.05)
    await hub.heartbeat()
    conn = await connect(hub, "alice")
    await events(conn, 0)
    seq1, seq2 = await append(hub, "alice", "e1", "e2")
    # e1 reaches the connection; e2's forward is lost (nobody delivers it).
    rec = (await hub.sessions.read("alice", conn.epoch or "", 0)).events
    hub.deliver_local("alice", [conn.conn_id], conn.epoch or "", rec[0])
    got = await events(conn, 2)
    assert [f["seq"] for f in got] == [seq1, seq2] and hub.tail_fills == 1


async def test_a_gap_waits_for_the_hold_then_is_read_from_the_log() -> None:
    world = World(Limits())
    hub = make_hub(world, gap_hold_s=0.05, tail_check_s=0)
    await hub.heartbeat()
    conn = await connect(hub, "bob")
    await append(hub, "bob", "e1", "e2", "e3")
    recs = (await hub.sessions.read("bob", conn.epoch or "", 0)).events
    hub.deliver_local("bob", [conn.conn_id], conn.epoch or "", recs[2])  # 3 before 1 and 2
    assert conn.has_gap()
    got = await events(conn, 3)
    assert [f["seq"] for f in got] == [1, 2, 3]


async def test_resume_seam_with_events_racing_the_replay() -> None:
    world = World(Limits())
    hub = make_hub(world, tail_check_s=0)
    await hub.heartbeat()
    first = await connect(hub, "carol")
    epoch = first.epoch
    await hub.remove(first)
    await append(hub, "carol", *[f"old{i}" for i in range(50)])
    conn = hub.new_connection("carol", "dev-carol", "websocket", 1e12)
    page = await hub.register(conn, f"{epoch}:10")
    # Live events land while the replay is still to be sent: they wait in the cursor.
    for seq in await append(hub, "carol", "new1", "new2"):
        rec = (await hub.sessions.read("carol", epoch or "", seq - 1, limit=1)).events[0]
        hub.deliver_local("carol", [conn.conn_id], epoch or "", rec)
    await hub.replay(conn, page)
    got = await events(conn, 42)
    assert [f["seq"] for f in got] == list(range(11, 53))  # exactly once, in order


async def test_drain_closes_with_server_shutdown_and_detaches() -> None:
    world = World(Limits())
    hub = make_hub(world, tail_check_s=0)
    await hub.heartbeat()
    conns = [await connect(hub, u) for u in ("u1", "u2")]

    async def transport_exit(c: Connection) -> None:
        await c.closed.wait()
        await hub.remove(c)  # what a transport does once its connection is closed

    exits = [asyncio.create_task(transport_exit(c)) for c in conns]
    await hub.drain(protocol.SERVER_SHUTDOWN)
    await asyncio.gather(*exits)
    assert all(c.close_code == protocol.SERVER_SHUTDOWN for c in conns)
    assert all(not world.sessions[u].meta.conns for u in ("u1", "u2"))
    assert "gw-a" not in (await hub.sessions.registry_snapshot()).live.replicas
