"""The measures, identical for every system: paced load steps, idle cost, connect rate and storm,
resume after missed events, one broadcast. Every loop is bounded in count and in time."""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from bench import procstat
from bench.system import Conn, System, close_all, start_reader


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 2)


def quantiles(xs: list[float], points: int = 400) -> list[float]:
    s = sorted(xs)
    if not s:
        return []
    return [round(s[min(len(s) - 1, int(i / points * len(s)))], 2) for i in range(points + 1)]


@dataclass
class Recorder:
    lat: dict[str, list[float]] = field(default_factory=dict)  # tag -> latencies (ms)
    arrivals: dict[str, list[float]] = field(default_factory=dict)  # tag -> receive times
    last_arrival: float = 0.0
    stray: int = 0

    def watch(self, tag: str) -> list[float]:
        self.arrivals[tag] = []
        return self.lat.setdefault(tag, [])

    def sink(self, data: dict[str, Any], now: float) -> None:
        self.last_arrival = now
        tag = data.get("tag")
        lst = self.lat.get(tag) if isinstance(tag, str) else None
        if lst is None:
            self.stray += 1
            return
        lst.append((now - data["sent_at"]) * 1000)
        self.arrivals[tag].append(now)  # type: ignore[index]

    async def quiet(self, gap: float = 1.0, limit: float = 20.0) -> None:
        """Wait until nothing arrived for `gap` s (bounded by `limit`): no backlog leaks on."""
        end = time.monotonic() + limit
        while time.monotonic() < end and time.time() - self.last_arrival < gap:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def bounded(aw: Awaitable[None], limit_s: float = 30) -> bool:
    try:
        await asyncio.wait_for(aw, limit_s)
        return True
    except Exception:
        return False


async def pace(n: int, rate: float, fire: Callable[[int], Awaitable[None]],
               max_inflight: int = 256) -> tuple[int, int, float]:
    """Fire n calls at `rate`/s (never more than max_inflight at once). -> (ok, failed, seconds)"""
    sem = asyncio.Semaphore(max_inflight)
    ok = failed = 0
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    deadline = start + 2 * n / rate + 30

    async def one(i: int) -> None:
        nonlocal ok, failed
        try:
            if await bounded(fire(i)):
                ok += 1
            else:
                failed += 1
        finally:
            sem.release()

    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0.001:
            await asyncio.sleep(delay)
        if time.monotonic() > deadline:
            break
        await sem.acquire()
        t = asyncio.create_task(one(i))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    return ok, failed, time.monotonic() - start


def cpu_report(sys_: System, a: dict[str, tuple[float, int]], b: dict[str, tuple[float, int]],
               events: int, wall: float) -> dict[str, Any]:
    d = procstat.cpu_delta(a, b)
    total = sum(d.values())
    return {
        "cpu_s": d,
        "server_cpu_pct": round(100 * total / wall, 1),
        "cpu_us_per_event": {k: round(1e6 * v / events, 1) for k, v in d.items()} if events
        else {},
        "cpu_total_us_per_event": round(1e6 * total / events, 1) if events else None,
    }


async def load_step(sys_: System, rec: Recorder, users: list[str], rate: float, seconds: float,
                    tag: str, drain: float = 10.0) -> dict[str, Any]:
    n = max(1, int(rate * seconds))
    lat = rec.watch(tag)
    rng = random.Random(hash(tag) & 0xFFFF)
    procs = sys_.processes()
    s0, lg0, t0 = procstat.sample(procs), procstat.own_cpu(), time.time()

    async def fire(i: int) -> None:
        await sys_.publish(rng.choice(users), {"id": i, "tag": tag, "i": i, "title": f"task {i}",
                                               "sent_at": time.time()})

    ok, failed, pace_s = await pace(n, rate, fire)
    end = time.monotonic() + drain
    while len(lat) < n and time.monotonic() < end:
        if time.time() - rec.last_arrival > 3 and time.monotonic() > end - drain + 3:
            break  # nothing arrives any more
        await asyncio.sleep(0.1)
    wall = time.time() - t0
    s1, lg1 = procstat.sample(procs), procstat.own_cpu()
    delivered = len(lat)
    arr = rec.arrivals[tag]
    span = max(seconds, (max(arr) - t0) if arr else seconds)
    out = {
        "rate": rate, "seconds": seconds, "offered": n, "published": ok,
        "publish_failed": failed, "publish_s": round(pace_s, 2),
        "delivered": delivered, "delivered_ratio": round(delivered / n, 4),
        "delivered_rate": round(delivered / span, 1),
        "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "p999_ms": pct(lat, 99.9),
        "max_ms": round(max(lat), 1) if lat else None,
        "loadgen_cpu_pct": round(100 * (lg1 - lg0) / wall, 1),
        **cpu_report(sys_, s0, s1, delivered, wall),
    }
    await rec.quiet()
    out["late"] = len(lat) - delivered
    return out


def saturated_ok(step: dict[str, Any]) -> bool:
    return step["delivered_ratio"] >= 0.95 and (step["p99_ms"] or 1e9) < 500


async def settle(sys_: System, below_pct: float = 25, max_s: float = 30,
                 windows: int = 3) -> dict[str, float]:
    """Wait (bounded) until the servers' CPU stayed below `below_pct` of one core for `windows`
    consecutive 1-s windows, so the aftermath of one phase (backlogs, activations, detaches) is
    not billed to the next."""
    procs = sys_.processes()
    t0 = time.monotonic()
    pct_now, quiet = 0.0, 0
    while time.monotonic() - t0 < max_s and quiet < windows:
        a = procstat.sample(procs)
        await asyncio.sleep(1)
        pct_now = 100 * sum(procstat.cpu_delta(a, procstat.sample(procs)).values())
        quiet = quiet + 1 if pct_now < below_pct else 0
    return {"settle_s": round(time.monotonic() - t0, 1), "cpu_pct": round(pct_now, 1)}


async def open_many(sys_: System, users: list[str], concurrency: int | None, rec: Recorder,
                    limit_s: float = 30, errors: dict[str, int] | None = None,
                    ) -> tuple[list[Conn], list[float], int, float]:
    """Open one connection per user (node = index % 2). -> (conns, connect ms, failed, seconds)
    Failure reasons are counted into `errors`."""
    sem = asyncio.Semaphore(concurrency or len(users) or 1)
    conns: list[Conn] = []
    times: list[float] = []
    failed = 0
    errs = errors if errors is not None else {}

    async def one(i: int, u: str) -> None:
        nonlocal failed
        async with sem:
            t = time.perf_counter()
            try:
                c = await asyncio.wait_for(sys_.open(u, i % sys_.nodes), limit_s)
            except Exception as e:
                failed += 1
                key = f"{type(e).__name__}: {e}"[:120]
                errs[key] = errs.get(key, 0) + 1
                return
            times.append((time.perf_counter() - t) * 1000)
            conns.append(start_reader(sys_, c, rec.sink))

    t0 = time.monotonic()
    await asyncio.gather(*(one(i, u) for i, u in enumerate(users)))
    return conns, times, failed, time.monotonic() - t0


async def idle(sys_: System, seconds: float, conns: int, base_rss: int) -> dict[str, Any]:
    procs = sys_.processes()
    s0, t0 = procstat.sample(procs), time.time()
    await asyncio.sleep(seconds)
    s1 = procstat.sample(procs)
    wall = time.time() - t0
    d = procstat.cpu_delta(s0, s1)
    rss = procstat.rss_total(s1)
    return {
        "connections": conns, "seconds": round(wall, 1),
        "cpu_pct": round(100 * sum(d.values()) / wall, 2),
        "cpu_pct_by_process": {k: round(100 * v / wall, 2) for k, v in d.items()},
        "rss_mb": round(rss / 2**20, 1),
        "rss_mb_by_process": {k: round(v[1] / 2**20, 1) for k, v in s1.items()},
        "rss_kb_per_conn": round((rss - base_rss) / 1024 / conns, 1) if conns else None,
        "cpu_us_per_conn_per_s": round(1e6 * sum(d.values()) / wall / conns, 2) if conns
        else None,
    }


async def broadcast(sys_: System, rec: Recorder, users: list[str], k: int | str
                    ) -> dict[str, Any]:
    tag = f"bc-{k}"
    lat = rec.watch(tag)
    sent = time.time()
    await bounded(sys_.broadcast(users, {"id": 0, "tag": tag, "i": 0, "sent_at": sent}))
    end = time.monotonic() + 30
    while len(lat) < len(users) and time.monotonic() < end:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await rec.quiet(1.0, 5.0)
    return {"connections": len(users), "delivered": len(lat),
            "first_ms": round(min(lat), 1) if lat else None,
            "last_ms": round(max(lat), 1) if lat else None}


async def resume(sys_: System, rec: Recorder, user: str, missed: int) -> dict[str, Any]:
    """Connect, see one event, disconnect; publish `missed` events; reconnect on the OTHER node
    with the last position; time from reconnect start to the last missed event."""
    got: list[tuple[int, float]] = []

    def sink(data: dict[str, Any], now: float) -> None:
        if data.get("tag") == f"rs-{user}":
            got.append((int(data["i"]), now))

    c = await sys_.open(user, 0)
    start_reader(sys_, c, sink)
    first = {"id": 0, "tag": f"rs-{user}", "i": -1, "sent_at": time.time()}
    await bounded(sys_.publish(user, first))
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.05)
    pos = c.position
    await close_all([c])
    got.clear()
    ok, _, _ = await pace(missed, 2000, lambda i: sys_.publish(
        user, {"id": i, "tag": f"rs-{user}", "i": i, "sent_at": time.time()}), 1)
    await asyncio.sleep(3)  # let the system store them (not part of the measure)
    t0 = time.time()
    c2 = await asyncio.wait_for(sys_.open(user, 1, pos), 60)
    for d in c2.replayed:  # recovered inside the handshake reply
        sink(d, time.time())
    start_reader(sys_, c2, sink)
    end = time.monotonic() + 60
    while len(got) < ok and time.monotonic() < end:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await close_all([c2])
    idx = [i for i, _ in got]
    return {"missed": missed, "published": ok, "received": len(got),
            "duplicates": len(idx) - len(set(idx)),
            # published one after the other (each publish call answered before the next):
            # adjacent pairs delivered in the opposite order
            "order_inversions": sum(1 for a, b in pairwise(idx) if a > b),
            "resume_ms": round((max(t for _, t in got) - t0) * 1000, 1) if got else None}
