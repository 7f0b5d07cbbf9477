"""Test-side helpers: publishing through a real daprd, a raw WebSocket client, actor calls."""

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from actors.wire import pack, unpack
from devtools.topology import Topology
from gateway.auth import mint_hs256

SECRET = "integration-test-secret-0123456789abcdef"
ADMIN_TOKEN = "integration-admin-token-0123456789"


def token(user: str, ttl: float = 3600, **extra: Any) -> str:
    return mint_hs256(SECRET, user, ttl, **extra)


def gw_port(topo: Topology, replica: str) -> int:
    return topo.apps[f"gateway-{replica}"].app_port


_clients: dict[int, httpx.AsyncClient] = {}


def _http() -> httpx.AsyncClient:
    # One pooled client per event loop: a new client per call costs an SSL context each
    # (~10 ms of CPU), enough to starve the test's own loop during bursts.
    key = id(asyncio.get_running_loop())
    if key not in _clients:
        _clients[key] = httpx.AsyncClient(timeout=15, limits=httpx.Limits(max_connections=32))
    return _clients[key]


async def publish(
    topo: Topology, payload: dict[str, Any], via: str = "producer", traceparent: str | None = None
) -> None:
    app = topo.apps[via]
    headers = {"dapr-api-token": topo.api_token}
    if traceparent is not None:  # W3C trace context of the publish (tests/integration/test_tracing)
        headers["traceparent"] = traceparent
    r = await _http().post(
        f"http://127.0.0.1:{app.http_port}/v1.0/publish/pubsub/task-updates",
        json=payload,
        headers=headers,
    )
    assert r.status_code == 204, r.text


def event(
    kind: str, task_id: int, audience: list[str] | None = None, **data: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "data": {"id": task_id, "title": f"t{task_id}", **data},
    }
    if audience is not None:
        body["audience"] = audience
    return body


async def actor(
    topo: Topology, actor_type: str, actor_id: str, method: str, req: dict[str, Any] | None = None
) -> dict[str, Any]:
    app = topo.any_alive("sessions")  # any replica's daprd: placement routes the call
    r = await _http().put(
        f"http://127.0.0.1:{app.http_port}/v1.0/actors/{actor_type}/{actor_id}/method/{method}",
        content=pack(req or {}),
        headers={"dapr-api-token": topo.api_token},
    )
    assert r.status_code == 200, r.text
    return unpack(r.content)


async def gw_connections(topo: Topology, replica: str) -> list[dict[str, Any]]:
    """The gateway's operator view of its connections (a Dapr-token route)."""
    r = await _http().get(
        f"http://127.0.0.1:{gw_port(topo, replica)}/internal/connections",
        headers={"dapr-api-token": topo.app_token},
    )
    assert r.status_code == 200, r.text
    return list(r.json())


def redis_cli(topo: Topology, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(topo.redis_port), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout


class WsClient:
    """A deliberately raw client: tests see exactly the frames the server sends."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}

    @staticmethod
    async def connect(
        topo: Topology,
        replica: str,
        user: str,
        device: str | None = None,
        since: str | None = None,
        tok: str | None = None,
        **kw: Any,
    ) -> "WsClient":
        q = f"device={device or uuid.uuid4().hex[:12]}"
        if since:
            q += f"&since={since}"
        url = f"ws://127.0.0.1:{gw_port(topo, replica)}/ws?{q}"
        headers = {"Authorization": f"Bearer {tok or token(user)}"}
        ws = await websockets.connect(url, additional_headers=headers, open_timeout=15, **kw)
        c = WsClient(ws)
        c.welcome = await c.next_frame(15)
        return c

    async def next_frame(self, timeout: float = 10) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any] = (
            json.loads(raw) if isinstance(raw, str) else __import__("msgpack").unpackb(raw)
        )
        self.frames.append(frame)
        return frame

    async def events(self, n: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The next n event frames (other frame types are recorded but skipped)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"got {len(out)} of {n} events: {out[-3:]}")
            f = await self.next_frame(left)
            if ("seq" in f or "bseq" in f) and "data" in f:  # user or broadcast stream
                out.append(f)
            elif f.get("type") == "ping":
                await self.send({"type": "pong"})
        return out

    async def quiet(self, window: float) -> list[dict[str, Any]]:
        """Frames (except pings) that arrive within `window` seconds: used to prove absence,
        always after a positive barrier event so the window is not a readiness guess."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + window
        while (left := deadline - time.monotonic()) > 0:
            try:
                f = await self.next_frame(left)
            except TimeoutError:
                break
            if f.get("type") not in ("ping", "pong"):
                got.append(f)
        return got

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        await self.ws.close()


async def poll_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """devtools.procs.wait_until without blocking the event loop (open clients keep reading)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if await asyncio.to_thread(check):
                return
        except Exception as e:  # probes fail until ready
            last = e
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout:.0f}s (last error: {last!r})")


async def keepalive(c: WsClient, period: float = 1.0) -> None:
    """A client frame every `period` s, so a client the test isn't reading from right now is
    not closed for heartbeat timeout (4012). Run as a task; cancel it before closing."""
    while True:
        await c.send({"type": "pong"})
        await asyncio.sleep(period)
