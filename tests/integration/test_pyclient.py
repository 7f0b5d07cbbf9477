"""The Python client (clients.pyclient) through the real runtime: two gateway replicas, the
sessions host, Redis.

Absence is never proven by waiting: after the events that must arrive exactly once, a barrier
event is published; per-user seqs are delivered in order, so when the barrier is the very next
event, nothing extra (no duplicate, no stray event) came before it."""

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from clients.pyclient import EventStream, TaskSyncClient
from devtools.topology import Topology
from tests.integration.harness import actor, event, gw_port, publish, token

FAST: dict[str, Any] = {"backoff_initial": 0.05, "backoff_max": 0.5, "ack_interval": 0.1}
# Seqs are assigned in the order the gateways process messages, not the order they were
# published (two replicas consume task-updates concurrently), so payload ids are compared as
# sorted lists while seqs must be exactly consecutive.


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def url(topo: Topology, replica: str) -> str:
    return f"http://127.0.0.1:{gw_port(topo, replica)}"


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames]


def ids(frames: list[dict[str, Any]]) -> list[int]:
    return sorted(f["data"]["id"] for f in frames)


async def take(stream: EventStream, n: int, timeout: float = 20) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < n:
                out.append(await anext(stream))
    except TimeoutError:
        got = [f.get("seq", f.get("bseq")) for f in out]
        raise TimeoutError(f"got {len(out)} of {n} events: {got}") from None
    return out


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    """Bounded polling of a condition we cannot be told about (actor state)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


async def meta(topo: Topology, user: str) -> dict[str, Any]:
    return dict((await actor(topo, "UserSession", user, "inspect"))["meta"])


async def wait_head(topo: Topology, user: str, head: int) -> None:
    async def ok() -> bool:
        return int((await meta(topo, user))["head"]) == head

    await until(ok, f"log head {head}")


async def wait_cursor(topo: Topology, user: str, device: str, seq: int) -> None:
    async def ok() -> bool:
        dev = (await meta(topo, user)).get("devices", {}).get(device)
        return dev is not None and dev["seq"] == seq

    await until(ok, f"device {device} cursor at {seq}")


@asynccontextmanager
async def running(client: TaskSyncClient) -> AsyncIterator[EventStream]:
    stream = client.events()  # before start(): nothing can slip past the stream
    await client.start()
    try:
        await client.wait_open(20)
        yield stream
    finally:
        await client.close()


async def publish_n(topo: Topology, user: str, ids: range, kind: str = "task_updated") -> None:
    for i in ids:
        await publish(topo, event(kind, i, audience=[user]))


async def test_websocket_receives_events_and_acks_advance_the_cursor(topo: Topology) -> None:
    u = uid("pyws")
    client = TaskSyncClient([url(topo, "gw-a")], token=token(u), device="py-ws", **FAST)
    via_handler: list[int] = []
    created: list[int] = []
    client.on("*", lambda ev: via_handler.append(ev["seq"]))

    async def on_created(ev: dict[str, Any]) -> None:  # async handlers are awaited in order
        created.append(ev["data"]["id"])

    client.on("task_created", on_created)
    async with running(client) as stream:
        assert client.transport == "websocket" and client.state == "open"
        await publish_n(topo, u, range(4))
        await publish(topo, event("task_created", 99, audience=[u]))
        got = await take(stream, 5)
        assert seqs(got) == [1, 2, 3, 4, 5]
        assert ids(got) == [0, 1, 2, 3, 99]
        assert via_handler == [1, 2, 3, 4, 5] and created == [99]
        epoch = (await meta(topo, u))["epoch"]
        assert client.position == f"{epoch}:5"
        # Only an ack from the client moves the device cursor; the connection is still open.
        await wait_cursor(topo, u, "py-ws", 5)
    final: str = client.state  # (a plain str: mypy would keep the narrowing to "open")
    assert final == "closed" and client.state_info["code"] == 1000


async def resume_on_other_replica(topo: Topology, prefix: str, **opts: Any) -> None:
    u, device = uid(prefix), uid("dev")
    first = TaskSyncClient([url(topo, "gw-a")], token=token(u), device=device, **FAST, **opts)
    async with running(first) as stream:
        await publish_n(topo, u, range(3))
        assert seqs(await take(stream, 3)) == [1, 2, 3]
        transport = first.transport
        await wait_cursor(topo, u, device, 3)
    pos = first.position
    assert pos is not None and pos.endswith(":3")

    await publish_n(topo, u, range(100, 130))
    await wait_head(topo, u, 33)  # the log has them all: the replay is what is under test
    again = TaskSyncClient(
        [url(topo, "gw-b")], token=token(u), device=device, since=pos, **FAST, **opts
    )
    assert again.transport == transport
    async with running(again) as stream:
        replay = await take(stream, 30)
        assert seqs(replay) == list(range(4, 34))
        assert ids(replay) == list(range(100, 130))
        await publish(topo, event("task_deleted", 500, audience=[u]))  # barrier
        (live,) = await take(stream, 1)
        assert (live["seq"], live["type"]) == (34, "task_deleted")
        assert again.position == f"{pos.split(':')[0]}:34"
        await wait_cursor(topo, u, device, 34)


async def test_resume_over_websocket_on_the_other_replica_gets_exactly_the_missed(
    topo: Topology,
) -> None:
    await resume_on_other_replica(topo, "pyres")


async def test_sse_only_receives_acks_and_resumes(topo: Topology) -> None:
    await resume_on_other_replica(topo, "pysse", transports=("sse",))


async def test_websocket_path_failing_falls_back_to_sse_and_receives_everything(
    topo: Topology,
) -> None:
    u = uid("pyfb")
    client = TaskSyncClient(
        [url(topo, "gw-a")], token=token(u), device="fb", ws_path="/no-such-ws", **FAST
    )
    states: list[tuple[str, str]] = []
    client.on_state(lambda s, info: states.append((s, info["transport"])))
    async with running(client) as stream:
        assert client.transport == "sse"
        # Exactly the configured number of WebSocket attempts, then SSE.
        assert states[:3] == [
            ("connecting", "websocket"),
            ("reconnecting", "websocket"),
            ("reconnecting", "sse"),
        ]
        assert states[-1] == ("open", "sse")
        await publish_n(topo, u, range(10))
        got = await take(stream, 10)
        assert seqs(got) == list(range(1, 11))
        await wait_cursor(topo, u, "fb", 10)


async def test_sse_fallback_switches_back_to_websocket_without_gap_or_duplicate(
    topo: Topology,
) -> None:
    u = uid("pyback")
    client = TaskSyncClient(
        [url(topo, "gw-b")], token=token(u), ws_path="/no-such-ws",
        retry_websocket_after=0.5, **FAST,
    )
    opened: list[str] = []
    client.on_state(lambda s, info: opened.append(info["transport"]) if s == "open" else None)
    async with running(client) as stream:
        assert client.transport == "sse"
        await publish_n(topo, u, range(5))
        first = await take(stream, 5)
        # The network path heals (simulated): the periodic WebSocket probe gets through and
        # the client moves over; the probe resumes from the position, so events overlap.
        client._ws_path = "/ws"

        async def on_ws() -> bool:
            return client.transport == "websocket" and client.state == "open"

        await until(on_ws, "switched back to websocket")
        await publish_n(topo, u, range(5, 10))
        rest = await take(stream, 5)
        assert seqs(first + rest) == list(range(1, 11))
        assert opened == ["sse", "websocket"]


async def test_msgpack_over_websocket_receives_the_same_events(topo: Topology) -> None:
    u = uid("pymp")
    client = TaskSyncClient([url(topo, "gw-a")], token=token(u), encoding="msgpack", **FAST)
    async with running(client) as stream:
        assert client.state_info["encoding"] == "msgpack"
        payload = {"note": "grüße ✓", "tags": ["a", "b"], "n": 2**40, "ratio": 0.5}
        await publish(topo, event("task_completed", 7, audience=[u], **payload))
        await publish_n(topo, u, range(3))
        got = await take(stream, 4)
        assert seqs(got) == [1, 2, 3, 4]
        (done,) = [f for f in got if f["type"] == "task_completed"]
        assert done["data"] == {"id": 7, "title": "t7", **payload}
        await wait_cursor(topo, u, client.device, 4)


async def test_unreachable_first_url_rotates_to_the_next_replica(topo: Topology) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    u = uid("pyrot")
    client = TaskSyncClient([dead, url(topo, "gw-b")], token=token(u), **FAST)
    async with running(client) as stream:
        assert client.url == url(topo, "gw-b") and client.transport == "websocket"
        await publish(topo, event("task_created", 1, audience=[u]))
        assert seqs(await take(stream, 1)) == [1]


async def test_unusable_position_calls_resync_handler_and_continues(topo: Topology) -> None:
    u = uid("pyrsy")
    client = TaskSyncClient(
        [url(topo, "gw-a")], token=token(u), since="0123456789abcdef:3", **FAST
    )
    resyncs: list[dict[str, Any]] = []

    async def reload(frame: dict[str, Any]) -> None:
        resyncs.append(frame)

    client.on_resync(reload)
    async with running(client) as stream:
        await publish(topo, event("task_created", 1, audience=[u]))
        (ev,) = await take(stream, 1)
        epoch = (await meta(topo, u))["epoch"]
        assert [(f["epoch"], f["reason"]) for f in resyncs] == [(epoch, "epoch_mismatch")]
        assert ev["seq"] == resyncs[0]["seq"] + 1
        assert client.position == f"{epoch}:{ev['seq']}"


async def test_connection_filter_is_applied_and_confirmed(topo: Topology) -> None:
    u = uid("pyflt")
    client = TaskSyncClient([url(topo, "gw-a")], token=token(u), **FAST)
    async with running(client) as stream:
        confirmed = await client.subscribe({"task_ids": [7]})
        assert confirmed is not None and confirmed["filters"]["task_ids"] == ["7"]
        await publish(topo, event("task_updated", 1, audience=[u]))  # filtered out
        await wait_head(topo, u, 1)  # so the barrier is certainly seq 2
        await publish(topo, event("task_updated", 7, audience=[u]))  # barrier
        (ev,) = await take(stream, 1)
        assert (ev["seq"], ev["data"]["id"]) == (2, 7)


async def test_token_expiry_gets_a_new_token_and_resumes(topo: Topology) -> None:
    u = uid("pytok")
    minted: list[float] = []

    async def get_token() -> str:
        ttl = 2 if not minted else 3600  # the first token expires while connected
        minted.append(ttl)
        return token(u, ttl=ttl)

    client = TaskSyncClient([url(topo, "gw-a")], get_token=get_token, **FAST)
    codes: list[int | None] = []
    client.on_state(lambda s, info: codes.append(info.get("code")) if s == "reconnecting" else None)
    async with running(client) as stream:
        await publish(topo, event("task_created", 1, audience=[u]))
        assert seqs(await take(stream, 1)) == [1]

        async def refreshed() -> bool:
            return len(minted) == 2 and client.state == "open"

        await until(refreshed, "reconnected with a fresh token")
        assert codes == [4002]
        await publish(topo, event("task_created", 2, audience=[u]))
        assert seqs(await take(stream, 1)) == [2]


async def test_idle_connections_stay_up_on_heartbeats_alone(topo: Topology) -> None:
    """WebSocket: our pongs keep the server's 6 s timeout away. SSE: its `: ping` comments keep
    our 2.5 x 2 s watchdog quiet. The idle window is the thing under test, not a readiness
    guess: it is longer than both timeouts."""
    u = uid("pyidle")
    ws = TaskSyncClient([url(topo, "gw-a")], token=token(u), **FAST)
    sse = TaskSyncClient([url(topo, "gw-b")], token=token(u), transports=("sse",), **FAST)
    drops: list[tuple[str, Any]] = []
    for c in (ws, sse):
        c.on_state(lambda s, info: drops.append((s, info.get("code"))) if s != "open" else None)
    async with running(ws) as ws_stream, running(sse) as sse_stream:
        drops.clear()  # "connecting" of the start itself
        await asyncio.sleep(7.0)
        await publish(topo, event("task_created", 1, audience=[u]))  # barrier
        assert seqs(await take(ws_stream, 1)) == [1]
        assert seqs(await take(sse_stream, 1)) == [1]
        assert drops == []


@pytest.mark.parametrize("transports", [("websocket",), ("sse",)])
async def test_missed_broadcasts_come_back_with_the_resume_point(
    topo: Topology, transports: tuple[str, ...]
) -> None:
    """The client keeps both positions and resumes with both: broadcasts it missed while away
    arrive once, on the other replica, over either transport."""
    u = uid("pybc")
    first = TaskSyncClient([url(topo, "gw-a")], token=token(u), **FAST, transports=transports)
    async with running(first) as stream:
        await publish(topo, event("task_created", 1))  # no audience: the broadcast stream
        (got,) = await take(stream, 1)
        b0 = got["bseq"]
    point = first.resume_point
    assert point is not None and point.endswith(f":{b0}") and "," in point
    for i in range(2, 5):
        await publish(topo, event("task_updated", i))

    async def recorded() -> bool:
        log = (await actor(topo, "UserSession", "~broadcast", "inspect"))["meta"]
        return int(log["head"]) >= b0 + 3

    await until(recorded, "three broadcasts recorded")
    again = TaskSyncClient([url(topo, "gw-b")], token=token(u), since=point, **FAST,
                           transports=transports)
    async with running(again) as stream:
        missed = await take(stream, 3)
        # Exactly the missed ones, gap-free; publishes race through two gateways, so the log
        # may have recorded them in another order than they were published.
        assert [f["bseq"] for f in missed] == [b0 + 1, b0 + 2, b0 + 3]
        assert sorted(f["data"]["id"] for f in missed) == [2, 3, 4]
        await publish(topo, event("task_deleted", 5))
        (live,) = await take(stream, 1)
        assert (live["bseq"], live["data"]["id"]) == (b0 + 4, 5)
        assert again.resume_point is not None and again.resume_point.endswith(f":{b0 + 4}")
