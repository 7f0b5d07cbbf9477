"""What the load generator needs from a system under test: start/stop, its server processes, a
WebSocket client that completes the system's handshake, and the server-side publish path."""

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from devtools.procs import Proc

SECRET = "bench-secret-bench-secret-bench-secret"
# Event sink: (payload data as published, receive time.time()).
Sink = Callable[[dict[str, Any], float], None]


@dataclass
class Conn:
    user: str
    node: int
    ws: ClientConnection
    position: Any = None  # the system's resume position after the last frame seen
    replayed: list[dict[str, Any]] = field(default_factory=list)  # events in the handshake
    task: asyncio.Task[None] | None = None


class System:
    name = "?"
    nodes = 2
    supports_resume = True

    # -- lifecycle (blocking; called in a thread) ------------------------------------------
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def processes(self) -> dict[str, int]:
        """Every server process: name -> process-group leader pid."""
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {}

    def logs_with_errors(self) -> list[str]:
        return []

    # -- client side -----------------------------------------------------------------------
    async def open(self, user: str, node: int, position: Any = None) -> Conn:
        """Connect and complete the handshake (the equivalent of tasksync's `welcome`)."""
        raise NotImplementedError

    async def handle(self, conn: Conn, raw: str | bytes, now: float, sink: Sink) -> None:
        """One frame from the server: answer pings, pass events to the sink, track position."""
        raise NotImplementedError

    # -- publish path ----------------------------------------------------------------------
    async def open_publisher(self) -> None:
        raise NotImplementedError

    async def publish(self, user: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    async def broadcast(self, users: list[str], data: dict[str, Any]) -> None:
        raise NotImplementedError

    async def close_publisher(self) -> None:
        raise NotImplementedError


async def ws_connect(url: str, headers: dict[str, str] | None = None,
                     open_timeout: float = 30) -> ClientConnection:
    # No permessage-deflate for anyone: same frames on the wire, cheaper client.
    return await connect(url, additional_headers=headers, compression=None,
                         open_timeout=open_timeout, ping_interval=None,
                         max_size=2**24, close_timeout=2)


async def reader(system: System, conn: Conn, sink: Sink) -> None:
    try:
        async for raw in conn.ws:
            await system.handle(conn, raw, time.time(), sink)
    except Exception:  # connection closed/reset: the measures count what arrived
        return


def start_reader(system: System, conn: Conn, sink: Sink) -> Conn:
    conn.task = asyncio.create_task(reader(system, conn, sink))
    return conn


async def close_all(conns: list[Conn]) -> None:
    async def one(c: Conn) -> None:
        try:
            await asyncio.wait_for(c.ws.close(), 3)
        except Exception:
            c.ws.transport.abort()
        if c.task is not None:
            c.task.cancel()
    for i in range(0, len(conns), 200):
        await asyncio.gather(*(one(c) for c in conns[i : i + 200]))


def dumps(o: Any) -> bytes:
    return json.dumps(o, separators=(",", ":")).encode()


class PeerProcesses(System):
    """A peer run as plain processes: its server nodes plus its own Redis."""

    nodes_p: list[Proc]
    redis: Proc | None

    def stop(self) -> None:
        for p in [*self.nodes_p, self.redis]:
            if p is not None:
                p.stop()

    def processes(self) -> dict[str, int]:
        out = {p.name: p.popen.pid for p in self.nodes_p if p.popen is not None}
        if self.redis is not None and self.redis.popen is not None:
            out["redis"] = self.redis.popen.pid
        return out
