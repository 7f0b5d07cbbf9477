"""Connection lifecycle through the real runtime: heartbeats, slow consumers, graceful shutdown,
crashed replicas, msgpack frames."""

import asyncio
import json
import socket
import uuid

import msgpack
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from devtools.topology import Topology
from tests.integration.harness import (
    WsClient,
    actor,
    event,
    gw_connections,
    gw_port,
    publish,
    token,
)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def conns_of(topo: Topology, user: str) -> dict:
    return dict((await actor(topo, "UserSession", user, "inspect"))["meta"]["conns"])


async def wait_async(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(what)


async def test_silent_client_is_closed_with_heartbeat_timeout_and_detached(topo: Topology) -> None:
    u = uid("silent")
    c = await WsClient.connect(topo, "gw-a", u)
    assert c.welcome["heartbeat"] == 2
    assert len(await conns_of(topo, u)) == 1
    # Never answer: the server pings every 2 s and gives up after 6 s without a client frame.
    with_ping = []
    try:
        while True:
            with_ping.append(await c.next_frame(timeout=15))
    except websockets.ConnectionClosed as e:
        assert e.rcvd is not None and e.rcvd.code == 4012
    assert any(f["type"] == "ping" for f in with_ping)

    async def detached() -> bool:
        return await conns_of(topo, u) == {}

    await wait_async(detached, 10, "connection detached at the actor")


class RawWs:
    """A client that really stops reading: sans-I/O websockets over a raw socket with a small
    fixed receive buffer (a library client keeps reading into its own memory)."""

    def __init__(self, url: str, tok: str) -> None:
        self.proto = ClientProtocol(parse_uri(url), max_size=None)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        self.url, self.tok = url, tok
        self.welcome: dict = {}

    async def open(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        await loop.sock_connect(self.sock, ("127.0.0.1", port))
        req = self.proto.connect()
        req.headers["Authorization"] = f"Bearer {self.tok}"
        self.proto.send_request(req)
        await self.flush()
        while self.proto.state is State.CONNECTING or not self.welcome:
            self.proto.receive_data(await loop.sock_recv(self.sock, 65536))
            for ev in self.proto.events_received():
                if getattr(ev, "opcode", None) == Opcode.TEXT:
                    self.welcome = json.loads(ev.data)

    async def flush(self) -> None:
        for chunk in self.proto.data_to_send():
            if chunk:
                await asyncio.get_running_loop().sock_sendall(self.sock, chunk)

    async def send_json(self, text: str) -> None:
        self.proto.send_text(text.encode())
        await self.flush()

    async def drain_all(self, timeout: float) -> tuple[list[dict], int | None]:
        """Read everything until the server closes; return JSON frames and the close code."""
        loop = asyncio.get_running_loop()
        frames: list[dict] = []
        deadline = loop.time() + timeout
        while self.proto.close_rcvd is None and loop.time() < deadline:
            try:
                data = await asyncio.wait_for(
                    loop.sock_recv(self.sock, 1 << 20), deadline - loop.time()
                )
            except ConnectionResetError:
                break  # the server gave up waiting for the close handshake
            if not data:
                break
            self.proto.receive_data(data)
            for ev in self.proto.events_received():
                if getattr(ev, "opcode", None) == Opcode.TEXT:
                    frames.append(json.loads(ev.data))
        code = self.proto.close_rcvd.code if self.proto.close_rcvd else None
        self.sock.close()
        return frames, code


async def test_slow_consumer_is_closed_and_loses_nothing(topo: Topology) -> None:
    u = uid("slow")
    port = gw_port(topo, "gw-a")
    raw = RawWs(f"ws://127.0.0.1:{port}/ws?device=slow", token(u))
    await raw.open(port)
    assert raw.welcome["type"] == "welcome"
    epoch = raw.welcome["epoch"]

    async def keepalive() -> None:  # alive (answers heartbeats) but never reads
        while True:
            await raw.send_json('{"type":"pong"}')
            await asyncio.sleep(1)

    alive = asyncio.create_task(keepalive())
    big = "x" * 15000  # strings are capped at 16 KiB by the topic schema; three per event
    total = 190  # ~8.5 MB, more than one connection's kernel buffers; under retention (200)
    await asyncio.gather(*(publish(topo, event("task_updated", i, audience=[u], description=big,
                                               notes=big, body=big)) for i in range(total)))

    async def dropped() -> bool:  # the server gave up on it and detached it
        return await conns_of(topo, u) == {}

    try:
        await wait_async(dropped, 60, "slow consumer detached")
    except TimeoutError:
        print("gw-a connections:", await gw_connections(topo, "gw-a"))
        raise
    alive.cancel()
    frames, code = await raw.drain_all(30)
    got = [f for f in frames if "seq" in f and "data" in f]
    # With its buffers full the client may never read our close frame (the server then drops
    # the TCP connection); the server's own record says why it closed.
    assert code in (4010, None), code
    log = topo.apps["gateway-gw-a"].app.log_path.read_text()  # type: ignore[union-attr]
    assert f"user={u} code=4010 slow_consumer" in log
    assert len(got) < total
    assert [f["seq"] for f in got] == list(range(1, len(got) + 1))
    # Resume: nothing was lost.
    last = got[-1]["seq"] if got else 0
    again = await WsClient.connect(topo, "gw-b", u, device="slow", since=f"{epoch}:{last}")
    rest = await again.events(total - last, timeout=60)
    assert [f["seq"] for f in rest] == list(range(last + 1, total + 1))
    await again.close()


async def test_msgpack_subprotocol_gets_binary_frames(topo: Topology) -> None:
    u = uid("mp")
    url = f"ws://127.0.0.1:{gw_port(topo, 'gw-b')}/ws?device=mp"
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token(u)}"},
                                  subprotocols=["tasksync.msgpack.v1"])
    assert ws.subprotocol == "tasksync.msgpack.v1"
    welcome = msgpack.unpackb(await ws.recv())
    assert welcome["type"] == "welcome"
    await publish(topo, event("task_completed", 3, audience=[u], title="2024-01-02-abc 5m"))
    raw = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(raw, bytes)
    ev = msgpack.unpackb(raw)
    # Date- and duration-looking strings come back untouched (serializer trap).
    assert ev["type"] == "task_completed" and ev["data"]["title"] == "2024-01-02-abc 5m"
    await ws.send(msgpack.packb({"type": "ping", "ts": 1.5}))
    pong = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
    assert pong == {"type": "pong", "ts": 1.5}
    await ws.close()


async def test_sigterm_tells_clients_to_reconnect_and_nothing_is_lost(topo: Topology) -> None:
    u = uid("drain")
    c = await WsClient.connect(topo, "gw-b", u, device="d1")
    epoch = c.welcome["epoch"]
    await publish(topo, event("task_created", 1, audience=[u]))
    assert [f["seq"] for f in await c.events(1)] == [1]
    try:
        topo.stop_app("gateway-gw-b")  # SIGTERM
        code = None
        try:
            while True:
                await c.next_frame(timeout=15)
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        assert code == 4011
        for i in range(5):
            await publish(topo, event("task_updated", 10 + i, audience=[u]))
        again = await WsClient.connect(topo, "gw-a", u, device="d1", since=f"{epoch}:1")
        assert [f["seq"] for f in await again.events(5)] == [2, 3, 4, 5, 6]
        await again.close()
    finally:
        topo.start_app("gateway-gw-b")
        topo.wait_app("gateway-gw-b")


async def test_crashed_replica_connections_expire_without_cleanup(topo: Topology) -> None:
    u = uid("crash")
    c = await WsClient.connect(topo, "gw-b", u, device="d1")
    epoch = c.welcome["epoch"]
    (dead_conn,) = await conns_of(topo, u)
    try:
        topo.kill_app("gateway-gw-b")  # SIGKILL: no detach, no drain

        async def gw_b_dead() -> bool:
            # Liveness is per replica: nobody touches the user's session, gw-b's one registry
            # lease simply runs out.
            snap = await actor(topo, "ReplicaRegistry", "default", "snapshot")
            return "gw-b" in snap["dead"] and "gw-b" not in snap["live"]

        await wait_async(gw_b_dead, 30, "gw-b's registry lease ran out")
        await publish(topo, event("task_created", 42, audience=[u]))
        again = await WsClient.connect(topo, "gw-a", u, device="d1", since=f"{epoch}:0")
        (ev,) = await again.events(1)
        assert ev["seq"] == 1 and ev["data"]["id"] == 42
        await again.close()

        async def dropped() -> bool:
            # An attach judged by a snapshot taken after gw-b died drops its connection for good
            # (gw-a refreshes its snapshot every lease/3).
            probe = await WsClient.connect(topo, "gw-a", u, device="d2")
            await probe.close()
            return dead_conn not in await conns_of(topo, u)

        await wait_async(dropped, 30, "the crashed replica's connection was dropped")
    finally:
        topo.start_app("gateway-gw-b")
        topo.wait_app("gateway-gw-b")
