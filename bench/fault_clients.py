"""The fault suite's clients: devices over WebSocket that resume like the real clients, and the
load (users x devices plus a producer publishing at a fixed rate through its daprd)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from devtools.topology import Topology

SECRET = "fault-suite-secret-0123456789abcdef0123"
ENV = {
    "TASKSYNC_JWT_SECRET": SECRET,
    "TASKSYNC_RETENTION_EVENTS": "500",
    "TASKSYNC_HEARTBEAT_SECONDS": "2",
    "TASKSYNC_HEARTBEAT_TIMEOUT_SECONDS": "6",
    "TASKSYNC_LEASE_SECONDS": "9",
    "TASKSYNC_MAX_CONNECTIONS_PER_USER": "8",
    "LOG_LEVEL": "WARNING",
}
GATEWAYS = ("gateway-gw-a", "gateway-gw-b")


def token(user: str, secret: str = SECRET) -> str:
    from gateway.auth import mint_hs256

    return mint_hs256(secret, user, 7200)


# -- devices ------------------------------------------------------------------------------------
@dataclass
class Device:
    """One client device: connects, resumes with its position after any drop, records frames."""

    user: str
    name: str
    prefer: int  # index into GATEWAYS of its first choice
    epoch: str | None = None
    last: int = 0
    got: dict[str, float] = field(default_factory=dict)  # event id -> first receive (monotonic)
    dup_ids: int = 0
    dup_seqs: int = 0
    gaps: int = 0
    resyncs: list[str] = field(default_factory=list)  # reasons
    resynced_at: list[float] = field(default_factory=list)
    silent_epoch_changes: int = 0
    connects: int = 0
    closes: dict[int, int] = field(default_factory=dict)  # close code -> count
    connect_failures: int = 0
    ws: Any = None
    connected_at: float = 0.0

    @property
    def position(self) -> str | None:
        return f"{self.epoch}:{self.last}" if self.epoch else None

    def on_frame(self, f: dict[str, Any], now: float) -> bool:
        """Record one frame; True when an ack is due."""
        kind = f.get("type")
        if kind == "welcome":
            if self.epoch is not None and f.get("epoch") != self.epoch:
                self.silent_epoch_changes += 1  # a new epoch must come with resync_required
            self.epoch = str(f.get("epoch"))
            return False
        if kind == "resync_required":
            self.resyncs.append(str(f.get("reason")))
            self.resynced_at.append(now)
            self.epoch, self.last = str(f["epoch"]), int(f["seq"])
            return True
        if "seq" in f and "data" in f:
            seq, eid = int(f["seq"]), str(f["id"])
            if seq <= self.last:
                self.dup_seqs += 1
                return False
            if seq > self.last + 1 and self.last > 0:
                self.gaps += 1
            self.last = seq
            if eid in self.got:
                self.dup_ids += 1
            else:
                self.got[eid] = now
            return seq % 5 == 0
        return False

    async def run(self, load: Load, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            gw = GATEWAYS[(self.prefer + attempt) % len(GATEWAYS)]
            q = f"device={self.name}" + (f"&since={self.position}" if self.position else "")
            url = f"ws://127.0.0.1:{load.topo.apps[gw].app_port}/ws?{q}"
            try:
                ws = await websockets.connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {token(self.user, load.secret)}"},
                    open_timeout=10,
                    max_queue=None,
                )
            except Exception:
                self.connect_failures += 1
                attempt += 1
                await asyncio.sleep(min(0.1 * attempt, 1.0))
                continue
            self.ws, self.connects, self.connected_at = ws, self.connects + 1, time.monotonic()
            code = await self._read(ws, load.hb_timeout_s)
            self.ws = None
            self.closes[code] = self.closes.get(code, 0) + 1
            if code != 1000:
                attempt += 1  # next try: the other gateway first (as the clients rotate)
            await asyncio.sleep(0.05 if code in (0, 4011, 1006) else 0.2)

    async def _read(self, ws: Any, hb_timeout_s: float) -> int:
        try:
            while True:
                # A client-side heartbeat timeout: a stopped gateway sends nothing.
                raw = await asyncio.wait_for(ws.recv(), hb_timeout_s)
                f = json.loads(raw)
                if f.get("type") == "ping":
                    await ws.send('{"type":"pong"}')
                    continue
                if self.on_frame(f, time.monotonic()):
                    await ws.send(json.dumps({"type": "ack", "seq": self.last}))
        except TimeoutError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1)
            return 0
        except websockets.ConnectionClosed as e:
            return e.rcvd.code if e.rcvd is not None else 1006
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1)
            raise
        except Exception:
            return 1006

    def drop(self) -> None:
        """Client-side abort (a network blip): the reader sees the close and reconnects."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.transport.abort()


# -- load ---------------------------------------------------------------------------------------
class Load:
    def __init__(
        self, topo: Topology, users: int, devices: int, rate: float, prefer: int | None = None,
        hb_timeout_s: float = 6.0,
    ) -> None:
        self.topo = topo
        self.secret = topo.extra_env.get("TASKSYNC_JWT_SECRET", SECRET)
        self.rate = rate
        self.hb_timeout_s = hb_timeout_s
        tag = uuid.uuid4().hex[:6]
        self.users = [f"f{tag}-{i}" for i in range(users)]
        self.devices = [
            Device(u, f"d{j}", prefer if prefer is not None else (i + j) % len(GATEWAYS))
            for i, u in enumerate(self.users)
            for j in range(devices)
        ]
        self.published: dict[str, dict[str, float]] = {u: {} for u in self.users}
        self.publish_failures = 0
        self.stop_devices = asyncio.Event()
        self.stop_producer = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._pubs: set[asyncio.Task[Any]] = set()
        self.http = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=64))
        self.n = 0

    async def connect(self, within: float = 60) -> None:
        for d in self.devices:
            self._tasks.append(asyncio.create_task(d.run(self, self.stop_devices)))
        await self.until(lambda: all(d.epoch for d in self.devices), within, "devices welcomed")

    async def until(self, check: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {within:.0f}s")
            await asyncio.sleep(0.05)

    async def publish_one(self, user: str, i: int) -> None:
        app = self.topo.apps["producer"]
        eid = uuid.uuid4().hex
        body = {"event_id": eid, "type": "task_updated", "audience": [user],
                "data": {"id": i, "title": f"t{i}"}}
        t0 = time.monotonic()
        deadline = t0 + 60
        while time.monotonic() < deadline:
            try:
                r = await self.http.post(
                    f"http://127.0.0.1:{app.http_port}/v1.0/publish/pubsub/task-updates",
                    json=body, headers={"dapr-api-token": self.topo.api_token},
                )
                if r.status_code == 204:
                    self.published[user][eid] = t0  # the delay counts from the first attempt
                    return
            except httpx.HTTPError:
                pass
            self.publish_failures += 1
            await asyncio.sleep(0.2)  # same event_id again: dedupe makes a retry safe

    async def produce(self) -> None:
        t0 = time.monotonic()
        while not self.stop_producer.is_set():
            due = t0 + self.n / self.rate
            if (wait := due - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_producer.wait(), wait)
                continue
            user = self.users[self.n % len(self.users)]
            task = asyncio.create_task(self.publish_one(user, self.n))
            self._pubs.add(task)
            task.add_done_callback(self._pubs.discard)
            self.n += 1

    def start_producer(self) -> None:
        self.stop_producer.clear()
        self._tasks.append(asyncio.create_task(self.produce()))

    async def stop_and_drain(self, within: float) -> bool:
        """Stop publishing, wait for every accepted publish, then (bounded) for every device to
        have every event of its user (or a resync covering it). True when complete."""
        self.stop_producer.set()
        if self._pubs:
            await asyncio.wait(list(self._pubs), timeout=70)

        def complete() -> bool:
            return all(
                d.resyncs or set(self.published[d.user]) <= set(d.got) for d in self.devices
            )

        try:
            await self.until(complete, within, "drain")
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.stop_devices.set()
        self.stop_producer.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        await self.http.aclose()
