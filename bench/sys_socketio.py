"""python-socketio peer: two uvicorn nodes + Redis; clients speak Engine.IO v4 / Socket.IO v5
over a raw WebSocket (the python-socketio AsyncClient costs several times more CPU per event)."""

import asyncio
import json
import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from bench import peers
from bench.system import SECRET, Conn, PeerProcesses, Sink, ws_connect
from devtools.procs import Proc, free_port, port_open, wait_until
from gateway.auth import mint_hs256

ROOT = Path(__file__).resolve().parent.parent


class SocketIO(PeerProcesses):
    name = "socketio"
    supports_resume = False  # python-socketio has no connection state recovery

    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="bench-socketio-"))
        self.redis: Proc | None = None
        self.redis_port = 0
        self.nodes_p: list[Proc] = []
        self.ports: list[int] = []
        self.mgr: Any = None
        # Like the HTTP publishers' pools: at most 32 publishes in flight. redis-py 8's default
        # pool (100, non-blocking) answers "Too many connections" beyond that, and the manager
        # then retries once and gives up: lost events on the publish side.
        self.sem = asyncio.Semaphore(32)

    def start(self) -> None:
        py = peers.ensure_venv()
        self.redis, self.redis_port = peers.start_redis(self.run_dir)
        env = dict(os.environ, BENCH_SIO_SECRET=SECRET,
                   BENCH_SIO_REDIS=f"redis://127.0.0.1:{self.redis_port}/0")
        for i in range(self.nodes):
            port = free_port()
            self.ports.append(port)
            self.nodes_p.append(Proc(
                f"sio-{i}", [str(py), "-m", "uvicorn", "bench.sio_server:app", "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning",
                             "--ws", "websockets-sansio", "--no-access-log"],
                env, ROOT, self.run_dir).start())
        for p, port in zip(self.nodes_p, self.ports, strict=True):
            wait_until(partial(port_open, port), 60, p.name)

    def versions(self) -> dict[str, str]:
        return {("redis-py" if k == "redis" else k): v
                for k, v in peers.import_from_peers().items()}

    def logs_with_errors(self) -> list[str]:
        out = []
        for f in sorted(self.run_dir.glob("sio-*.log")):
            lines = [ln for ln in f.read_text(errors="replace").splitlines()
                     if "Error" in ln or "Traceback" in ln]
            out += [f"{f.name}: {ln[:300]}" for ln in lines[:5]]
        return out

    async def open(self, user: str, node: int, position: Any = None) -> Conn:
        port = self.ports[node % len(self.ports)]
        ws = await ws_connect(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
        conn = Conn(user, node, ws)
        opened = await ws.recv()
        if not str(opened).startswith("0"):
            raise RuntimeError(f"engine.io open expected: {opened!r}")
        await ws.send("40" + json.dumps({"token": mint_hs256(SECRET, user)}))
        for _ in range(10):
            m = str(await ws.recv())
            if m.startswith("40"):
                return conn  # connected: the connect handler has joined the user's room
            if m.startswith("44"):
                raise RuntimeError(f"refused: {m}")
            if m == "2":
                await ws.send("3")
        raise RuntimeError("no socket.io connect ack")

    async def handle(self, conn: Conn, raw: str | bytes, now: float, sink: Sink) -> None:
        m = raw if isinstance(raw, str) else raw.decode()
        if m.startswith("42"):
            ev = json.loads(m[2:])
            sink(ev[1], now)
        elif m == "2":
            await conn.ws.send("3")

    async def open_publisher(self) -> None:
        peers.import_from_peers()
        import socketio

        self.mgr = socketio.AsyncRedisManager(f"redis://127.0.0.1:{self.redis_port}/0",
                                              write_only=True)

    async def publish(self, user: str, data: dict[str, Any]) -> None:
        async with self.sem:
            await self.mgr.emit("task", data, room=user, namespace="/")

    async def broadcast(self, users: list[str], data: dict[str, Any]) -> None:
        async with self.sem:
            await self.mgr.emit("task", data, namespace="/")

    async def close_publisher(self) -> None:
        self.mgr = None
