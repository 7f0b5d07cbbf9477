"""Load-generator client cost for the socketio peer: python-socketio's AsyncClient vs the raw
Engine.IO/Socket.IO-over-websockets client used by bench.compare. CPU of THIS process per
received event (both receive the same events from one socketio node).

    ~/.cache/tasksync/bench-peers-venv/bin/python -m bench.client_cost [--clients 200]
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import socketio  # type: ignore[import-not-found]
import websockets

from bench.peers import start_redis
from devtools.procs import Proc, free_port, port_open, wait_until

SECRET = "client-cost-secret"
ROOT = Path(__file__).resolve().parent.parent


def token(user: str) -> str:
    import base64
    import hashlib
    import hmac

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": user, "exp": time.time() + 3600}).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


async def raw_client(port: int, user: str, count: list[int]) -> Any:
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
                                  compression=None, ping_interval=None)
    await ws.recv()
    await ws.send("40" + json.dumps({"token": token(user)}))
    await ws.recv()

    async def loop() -> None:
        async for m in ws:
            if isinstance(m, str) and m.startswith("42"):
                json.loads(m[2:])
                count[0] += 1
            elif m == "2":
                await ws.send("3")
    return asyncio.create_task(loop()), ws


async def sio_client(port: int, user: str, count: list[int]) -> Any:
    c = socketio.AsyncClient(reconnection=False)

    @c.on("task")  # type: ignore[untyped-decorator]
    async def on_task(data: Any) -> None:
        count[0] += 1

    await c.connect(f"http://127.0.0.1:{port}", transports=["websocket"],
                    auth={"token": token(user)})
    return None, c


async def measure(kind: str, port: int, redis_url: str, n: int, events: int) -> dict[str, Any]:
    count = [0]
    make = raw_client if kind == "raw" else sio_client
    clients = [await make(port, f"u{i}", count) for i in range(n)]
    mgr = socketio.AsyncRedisManager(redis_url, write_only=True)
    await asyncio.sleep(1)
    t0, c0 = time.time(), time.process_time()
    for i in range(events):
        await mgr.emit("task", {"i": i, "sent_at": time.time()}, room=f"u{i % n}", namespace="/")
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    for _ in range(200):
        if count[0] >= events:
            break
        await asyncio.sleep(0.05)
    cpu, wall = time.process_time() - c0, time.time() - t0
    for task, c in clients:
        if task is not None:
            task.cancel()
            await c.close()
        else:
            await c.disconnect()
    return {"client": kind, "received": count[0], "cpu_s": round(cpu, 3),
            "cpu_us_per_event": round(1e6 * cpu / max(1, count[0]), 1), "wall_s": round(wall, 1)}


async def main(a: argparse.Namespace) -> None:
    run = Path(tempfile.mkdtemp(prefix="bench-client-cost-"))
    redis, rport = start_redis(run)
    port = free_port()
    env = dict(os.environ, BENCH_SIO_SECRET=SECRET, BENCH_SIO_REDIS=f"redis://127.0.0.1:{rport}")
    node = Proc("sio", [sys.executable, "-m", "uvicorn", "bench.sio_server:app",
                        "--port", str(port), "--log-level", "warning"], env, ROOT, run).start()
    try:
        wait_until(lambda: port_open(port), 30, "sio")
        for kind in ("raw", "asyncclient"):
            print(json.dumps(await measure(kind, port, f"redis://127.0.0.1:{rport}",
                                           a.clients, a.events)))
    finally:
        node.stop()
        redis.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--events", type=int, default=3000)
    asyncio.run(main(ap.parse_args()))
