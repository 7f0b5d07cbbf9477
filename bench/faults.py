"""Fault suite: real daprd, placement and Redis on loopback; events flowing while a fault hits.

    .venv/bin/python -m bench.faults           # full plan (~25 min), writes docs/reliability.md
    .venv/bin/python -m bench.faults --short    # about 5 minutes, same rows, smaller numbers
    .venv/bin/python -m bench.faults --only gw-app-kill,redis-aof --no-doc

Every scenario: users x devices connected over WebSocket (devices resume with their `epoch:seq`
position on any gateway when a connection drops, like the JS/Python clients), a producer
publishing at a fixed rate through the producer's daprd, one fault, then a drain with a bounded
wait. Per device it checks what arrived against what was published for its user: delivered,
duplicates (an event id or a seq seen twice), gaps (a seq jump inside one epoch), lost (published
but never delivered, on a device that was not told to resync), resync_required, and the delay
(receive - publish, one monotonic clock) of every event.

The same engine (Load, Device, run_scenario) runs the small-scale fault tests in
tests/integration/test_faults.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from devtools.procs import wait_until
from devtools.topology import ROOT, Topology

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
SLOW_S = 1.0  # an event slower than this counts as "not yet recovered"


def token(user: str, secret: str = SECRET) -> str:
    from gateway.auth import mint_hs256

    return mint_hs256(secret, user, 7200)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


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


# -- results ------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    fault: str
    published: int = 0  # events accepted by the producer's daprd
    expected: int = 0  # sum over devices of their user's published events
    delivered: int = 0  # distinct published events received, summed over devices
    min_device_ratio: float = 0.0  # worst device: delivered / published for its user
    duplicates: int = 0
    gaps: int = 0
    lost: int = 0  # never delivered to a device that got no resync_required
    skipped_by_resync: int = 0  # not delivered, on a device told to resync (it reloads)
    resync_required: int = 0
    resync_reasons: dict[str, int] = field(default_factory=dict)
    silent_epoch_changes: int = 0
    publish_retries: int = 0
    reconnects: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)
    delay_p50_s: float = 0.0
    delay_p99_s: float = 0.0
    delay_max_s: float = 0.0
    fault_p99_s: float = 0.0  # delay p99 of events published in [fault - 1 s, fault + 5 s]
    fault_max_s: float = 0.0
    recover_s: float = 0.0  # from the fault to the last event slower than SLOW_S arriving
    drained: bool = True
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.drained and self.duplicates == 0 and self.gaps == 0 and self.lost == 0
                and self.silent_epoch_changes == 0)


def evaluate(load: Load, name: str, fault: str, fault_at: float | None, drained: bool) -> Result:
    r = Result(name=name, fault=fault, drained=drained)
    r.published = sum(len(p) for p in load.published.values())
    r.publish_retries = load.publish_failures
    delays: list[float] = []
    around: list[float] = []
    slow_until = fault_at or 0.0
    ratios = []
    for d in load.devices:
        pub = load.published[d.user]
        r.expected += len(pub)
        have = [e for e in pub if e in d.got]
        r.delivered += len(have)
        ratios.append(len(have) / len(pub) if pub else 1.0)
        missing = len(pub) - len(have)
        if d.resyncs:
            r.skipped_by_resync += missing
        else:
            r.lost += missing
        r.duplicates += d.dup_ids + d.dup_seqs
        r.gaps += d.gaps
        r.resync_required += len(d.resyncs)
        for reason in d.resyncs:
            r.resync_reasons[reason] = r.resync_reasons.get(reason, 0) + 1
        r.silent_epoch_changes += d.silent_epoch_changes
        r.reconnects += max(0, d.connects - 1)
        for code, n in d.closes.items():
            r.close_codes[str(code)] = r.close_codes.get(str(code), 0) + n
        for e in have:
            delay = d.got[e] - pub[e]
            delays.append(delay)
            if fault_at is not None and fault_at - 1 <= pub[e] <= fault_at + 5:
                around.append(delay)
            if fault_at is not None and delay > SLOW_S and pub[e] >= fault_at - 5:
                slow_until = max(slow_until, d.got[e])
    r.min_device_ratio = round(min(ratios), 4) if ratios else 1.0
    r.delay_p50_s = round(pct(delays, 50), 3)
    r.delay_p99_s = round(pct(delays, 99), 3)
    r.delay_max_s = round(max(delays, default=0.0), 3)
    r.fault_p99_s = round(pct(around, 99), 3)
    r.fault_max_s = round(max(around, default=0.0), 3)
    if fault_at is not None:
        r.recover_s = round(max(0.0, slow_until - fault_at), 2)
    return r


# -- faults -------------------------------------------------------------------------------------
async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def busiest_sessions_replica(topo: Topology) -> str:
    """The sessions replica hosting more UserSession actors (from its daprd's metadata)."""
    import urllib.request

    counts = {}
    for a in topo.replicas("sessions"):
        req = urllib.request.Request(
            f"http://127.0.0.1:{a.http_port}/v1.0/metadata",
            headers={"dapr-api-token": topo.api_token},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            meta = json.load(resp)
        n = 0
        for t in (meta.get("actorRuntime") or {}).get("activeActors") or []:
            if t.get("type") == "UserSession":
                n = int(t.get("count", 0))
        counts[a.name] = n
    return max(counts, key=lambda k: counts[k])


async def restart_parts(topo: Topology, name: str, parts: list[str], down_s: float) -> None:
    """Bring killed processes back after `down_s` (a supervisor's restart delay), then wait for
    the replica's real readiness probe (bounded)."""
    await asyncio.sleep(down_s)
    for p in parts:
        await in_thread(topo.start_part, name, p)
    await in_thread(topo.wait_app, name, 120)


Fault = Callable[[Topology, Load], Awaitable[dict[str, Any]]]


def kill_parts(which: str, parts: list[str], down_s: float) -> Fault:
    async def fault(topo: Topology, load: Load) -> dict[str, Any]:
        name = busiest_sessions_replica(topo) if which == "sessions" else which
        for p in parts:
            await in_thread(topo.kill_part, name, p)
        t_kill = time.monotonic()
        await restart_parts(topo, name, parts, down_s)
        return {"victim": name, "back_after_s": round(time.monotonic() - t_kill, 2)}

    return fault


def restart_placement() -> Fault:
    async def fault(topo: Topology, load: Load) -> dict[str, Any]:
        assert topo.placement is not None
        await in_thread(topo.placement.kill)
        t0 = time.monotonic()
        await in_thread(topo.start_placement)
        return {"placement_back_s": round(time.monotonic() - t0, 2)}

    return fault


def restart_redis(aof: bool = True) -> Fault:
    async def fault(topo: Topology, load: Load) -> dict[str, Any]:
        assert topo.redis is not None and topo.redis_aof == aof
        await in_thread(topo.redis.kill)
        t0 = time.monotonic()
        await in_thread(topo.start_redis)
        return {"redis_back_s": round(time.monotonic() - t0, 2)}

    return fault


def sigstop(name: str, stop_s: float) -> Fault:
    async def fault(topo: Topology, load: Load) -> dict[str, Any]:
        app = topo.part(name, "app")
        app.signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(stop_s)  # the fault's length, not a readiness wait
        finally:
            app.signal(signal.SIGCONT)
        await in_thread(topo.wait_app, name, 120)
        return {"stopped_s": stop_s}

    return fault


def storm() -> Fault:
    async def fault(topo: Topology, load: Load) -> dict[str, Any]:
        t0 = time.monotonic()
        for d in load.devices:
            d.drop()
        before = {id(d): d.connects for d in load.devices}
        await load.until(
            lambda: all(d.connects > before[id(d)] and d.ws is not None for d in load.devices),
            120, "every client reconnected",
        )
        return {"all_reconnected_s": round(time.monotonic() - t0, 2)}

    return fault


# -- scenarios ----------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    fault_label: str
    fault: Fault | None
    users: int = 10
    devices: int = 2
    rate: float = 15.0
    before_s: float = 5.0
    after_s: float = 15.0
    drain_s: float = 60.0
    prefer: int | None = None
    churn_s: float = 0.0  # soak: mean seconds between drops of one device
    notes: str = ""


async def run_scenario(topo: Topology, sc: Scenario) -> Result:
    load = Load(topo, sc.users, sc.devices, sc.rate, prefer=sc.prefer)
    fault_at: float | None = None
    extra: dict[str, Any] = {}
    mem0 = memory(topo)
    try:
        await load.connect(within=max(60, sc.users * sc.devices / 10))
        load.start_producer()
        if sc.churn_s:
            extra.update(await churn(load, sc.before_s + sc.after_s, sc.churn_s))
        else:
            await asyncio.sleep(sc.before_s)  # traffic before the fault (not a readiness wait)
            if sc.fault is not None:
                fault_at = time.monotonic()
                extra.update(await sc.fault(topo, load))
            rest = sc.after_s - (time.monotonic() - (fault_at or time.monotonic()))
            if rest > 0:
                await asyncio.sleep(rest)
        drained = await load.stop_and_drain(sc.drain_s)
        r = evaluate(load, sc.name, sc.fault_label, fault_at, drained)
    finally:
        await load.close()
    r.notes = sc.notes
    if sc.churn_s:
        extra["memory_mb_start"] = mem0
        extra["memory_mb_end"] = memory(topo)
        extra["state"] = state_size(topo, load.users)
    r.extra = extra
    return r


async def churn(load: Load, duration: float, mean_s: float) -> dict[str, Any]:
    """Soak: every `mean_s / len(devices)` seconds one random device drops its connection."""
    import random

    rnd = random.Random(7)
    drops = 0
    t_end = time.monotonic() + duration
    step = mean_s / max(1, len(load.devices))
    while time.monotonic() < t_end:
        await asyncio.sleep(step)
        rnd.choice(load.devices).drop()
        drops += 1
    return {"drops": drops}


def memory(topo: Topology) -> dict[str, float]:
    from bench.procstat import sample

    procs: dict[str, int] = {}
    for p in topo.procs():
        if p.alive and p.pid is not None:
            procs[p.name] = p.pid
    return {n: round(rss / 1e6, 1) for n, (_, rss) in sample(procs).items()}


def state_size(topo: Topology, users: list[str]) -> dict[str, Any]:
    """Actor state per user in Redis: keys and bytes (MEMORY USAGE), max over the users."""
    def cli(*args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(topo.redis_port), *args], check=True,
                              capture_output=True, text=True, timeout=20).stdout

    worst_keys, worst_bytes = 0, 0
    for u in users:
        keys = cli("--scan", "--pattern", f"sessions||UserSession||{u}||*").split()
        size = sum(int(cli("MEMORY", "USAGE", k).strip() or 0) for k in keys)
        worst_keys, worst_bytes = max(worst_keys, len(keys)), max(worst_bytes, size)
    return {"max_keys_per_user": worst_keys, "max_bytes_per_user": worst_bytes}


def plan(short: bool) -> list[Scenario]:
    k = 0.5 if short else 1.0
    gw, after, down = "gateway-gw-b", 15 * k + 5, 8.0 if short else 10.0
    return [
        Scenario("gw-app-kill", "kill -9 gateway app (daprd stays), back after "
                 f"{down:.0f} s", kill_parts(gw, ["app"], down), rate=20, prefer=0,
                 after_s=after, notes="users on the other gateway; in-flight events fail over"),
        Scenario("gw-daprd-kill", f"kill -9 gateway daprd (app stays), back after {down:.0f} s",
                 kill_parts(gw, ["daprd"], down), after_s=after),
        Scenario("gw-kill", f"kill -9 gateway app + daprd, back after {down:.0f} s",
                 kill_parts(gw, ["app", "daprd"], down), after_s=after),
        Scenario("sessions-app-kill", "kill -9 busiest sessions app (daprd stays), back after "
                 f"{down:.0f} s", kill_parts("sessions", ["app"], down), after_s=after + 10),
        Scenario("sessions-daprd-kill", "kill -9 busiest sessions daprd (app stays), back after "
                 f"{down:.0f} s", kill_parts("sessions", ["daprd"], down), after_s=after + 10),
        Scenario("sessions-kill", f"kill -9 busiest sessions replica (app + daprd), back after "
                 f"{down:.0f} s", kill_parts("sessions", ["app", "daprd"], down),
                 after_s=after + 10),
        Scenario("placement-restart", "kill -9 placement, restarted at once",
                 restart_placement(), after_s=after),
        Scenario("redis-aof-restart", "kill -9 Redis (AOF everysec), restarted at once",
                 restart_redis(True), after_s=after),
        Scenario("gw-sigstop", f"SIGSTOP gateway app {20 if short else 60} s, then SIGCONT",
                 sigstop(gw, 20 if short else 60), after_s=(20 if short else 60) + 10),
        Scenario("reconnect-storm", "1,000 clients drop and reconnect at once", storm(),
                 users=500, devices=2, rate=20, before_s=5, after_s=15, drain_s=120),
        Scenario("soak", f"soak {1 if short else 10} min: events, connects, disconnects",
                 None, users=20, devices=2, rate=20, before_s=0, after_s=60 if short else 600,
                 churn_s=30.0),
    ]


# -- report -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg": [round(load1, 2), round(load5, 2), round(load15, 2)],
            "kernel": platform.release()}


def fmt_row(r: dict[str, Any]) -> str:
    per_dev = f"{r['delivered']}/{r['expected']} (worst {r['min_device_ratio']:.3f})"
    reasons = ",".join(f"{k}:{v}" for k, v in r["resync_reasons"].items())
    resync = f"{r['resync_required']}" + (f" ({reasons})" if reasons else "")
    return (f"| {r['name']} | {r['fault']} | {r['published']} | {per_dev} | {r['duplicates']} | "
            f"{r['gaps']} | {r['lost']} | {resync} | {r['recover_s']:.1f} | "
            f"{r['fault_p99_s']:.2f} / {r['fault_max_s']:.2f} | "
            f"{'yes' if r['ok'] else '**NO**'} |")


def write_doc(path: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    begin, end = "<!-- bench.faults:begin -->", "<!-- bench.faults:end -->"
    lines = [
        begin,
        f"Run: `{meta['command']}` ({meta['mode']} mode), {meta['date']}, {meta['elapsed_min']} "
        f"min. Machine: {meta['machine']['cpus']} cores, load average before "
        f"{meta['machine_before']['loadavg']}, after {meta['machine']['loadavg']} (shared, "
        "noisy). Raw: `bench/results/faults-" + meta["mode"] + ".json`."
        + (f" Merged: {meta['merged']}." if meta.get("merged") else ""),
        "",
        "| scenario | fault | published | delivered per device (sum; worst device) | "
        "duplicates | gaps | lost | resync_required | recover s | fault p99 / max delay s | "
        "ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[fmt_row(r) for r in results],
        "",
    ]
    for r in results:
        details = {k: v for k, v in r["extra"].items()}
        details.update(reconnects=r["reconnects"], close_codes=r["close_codes"],
                       publish_retries=r["publish_retries"], delay_p99_s=r["delay_p99_s"],
                       skipped_by_resync=r["skipped_by_resync"], drained=r["drained"])
        lines.append(f"- **{r['name']}**: " + ", ".join(f"{k}={v}" for k, v in details.items())
                     + (f". {r['notes']}" if r["notes"] else ""))
    lines.append(end)
    block = "\n".join(lines)
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text + "\n" + block + "\n"
    path.write_text(text)


def start_topology(
    run_dir: Path, env: dict[str, str] | None = None, pubsub: dict[str, str] | None = None,
    app_health: bool = True,
) -> Topology:
    """The suite's topology (Redis AOF on). `pubsub` overrides metadata of components/pubsub.yaml
    in a copy of the components (for measuring alternatives); app_health=False drops daprd's app
    health check flags."""
    t = Topology(run_dir, fixed_ports=False, extra_env=dict(env or ENV), redis_aof=True)
    if pubsub:
        import shutil

        import yaml

        res = run_dir / "components"
        shutil.copytree(t.resources, res)
        doc = yaml.safe_load((res / "pubsub.yaml").read_text())
        for m in doc["spec"]["metadata"]:
            if m["name"] in pubsub:
                m["value"] = pubsub[m["name"]]
        (res / "pubsub.yaml").write_text(yaml.safe_dump(doc))
        t.resources = res
    if not app_health:
        for a in t.apps.values():
            a.sidecar_flags = []
    t.start()
    return t


async def main_async(args: argparse.Namespace) -> int:
    scenarios = plan(args.short)
    if args.only:
        wanted = args.only.split(",")
        scenarios = [s for s in scenarios if s.name in wanted]
    mode = "short" if args.short else "full"
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"faults-{mode}.json"
    before = machine()
    t_start = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="tasksync-faults-"))
    print(f"[faults] topology in {run_dir}", file=sys.stderr)
    pubsub = {}
    if args.processing_timeout:
        pubsub["processingTimeout"] = args.processing_timeout
    if args.redeliver_interval:
        pubsub["redeliverInterval"] = args.redeliver_interval
    topo = await in_thread(start_topology, run_dir, None, pubsub, not args.no_app_health)
    scenarios = [s for s in scenarios for _ in range(args.repeat)]
    # kill -USR1 <pid>: print where every task waits (a hung run can be diagnosed live).
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    results: list[dict[str, Any]] = []
    if args.merge and out.exists():  # rows of an earlier run, replaced by name
        results = json.loads(out.read_text())["results"]
    try:
        for sc in scenarios:
            t0 = time.monotonic()
            print(f"[faults] {sc.name}: {sc.fault_label}", file=sys.stderr)
            limit = sc.before_s + sc.after_s + sc.drain_s + sc.users * sc.devices / 10 + 300
            try:
                async with asyncio.timeout(limit):
                    r = await run_scenario(topo, sc)
            except Exception as e:  # a scenario that breaks is a row, not the end of the run
                if isinstance(e, TimeoutError):
                    dump_tasks()
                r = Result(name=sc.name, fault=sc.fault_label, drained=False,
                           notes=f"scenario failed: {e!r}")
            row = {**asdict(r), "ok": r.ok, "wall_s": round(time.monotonic() - t0, 1)}
            results = [x for x in results if x["name"] != sc.name or args.repeat > 1] + [row]
            print(f"[faults]   {json.dumps(row)}", file=sys.stderr)
            save(out, results, {"partial": True, "mode": mode})
            # Whatever a scenario left down comes back before the next one (bounded).
            await in_thread(heal, topo)
    finally:
        await in_thread(topo.stop)
    meta = {
        "command": "python -m bench.faults" + (" --short" if args.short else ""),
        "mode": mode,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "elapsed_min": round((time.monotonic() - t_start) / 60, 1),
        "machine_before": before,
        "machine": machine(),
        "logs": str(run_dir / "logs"),
    }
    if args.merge:
        meta["merged"] = "rows of an earlier run kept; these re-run: " + ",".join(
            sorted({sc.name for sc in scenarios}))
    order = [sc.name for sc in plan(args.short)]
    results.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    save(out, results, meta)
    meta["overrides"] = {**pubsub, "app_health": not args.no_app_health}
    if not args.no_doc:
        write_doc(ROOT / "docs" / "reliability.md", results, meta)
    print(f"[faults] wrote {out}", file=sys.stderr)
    return 0 if all(r["ok"] for r in results) else 1


def save(out: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


def dump_tasks() -> None:
    """Where a scenario that overran its bound was waiting (for the report)."""
    for t in asyncio.all_tasks():
        t.print_stack(limit=4, file=sys.stderr)


def heal(topo: Topology) -> None:
    if topo.redis is None or not topo.redis.alive:
        topo.start_redis()
    if topo.placement is None or not topo.placement.alive:
        topo.start_placement()
    for name, a in topo.apps.items():
        for part, p in (("app", a.app), ("daprd", a.sidecar)):
            if p is None or not p.alive:
                topo.start_part(name, part)
            elif part == "app":
                p.signal(signal.SIGCONT)
    for name in topo.apps:
        wait_until(lambda n=name: _ready(topo, n), 120, f"{name} ready")


def _ready(topo: Topology, name: str) -> bool:
    topo.wait_app(name, 120)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--short", action="store_true", help="about 5 minutes (smaller numbers)")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--no-doc", action="store_true", help="don't rewrite docs/reliability.md")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other rows of the existing JSON (re-run some rows only)")
    ap.add_argument("--repeat", type=int, default=1, help="run each scenario N times")
    ap.add_argument("--out", help="raw JSON path (default bench/results/faults-<mode>.json)")
    # Alternatives to measure against components/ and dapr.yaml (docs/operations.md).
    ap.add_argument("--processing-timeout", help="pubsub processingTimeout (ms) override")
    ap.add_argument("--redeliver-interval", help="pubsub redeliverInterval (ms) override")
    ap.add_argument("--no-app-health", action="store_true", help="daprd without app health checks")
    args = ap.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
