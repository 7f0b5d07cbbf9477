"""Cost of the targeted hot path, per process: the tool behind every optimisation decision.

Starts the real topology on free loopback ports, connects N users (one WebSocket each, spread over
both gateways), then for each offered rate publishes events to random users through the
producer's daprd for a fixed time and reports delivered rate, latency (publish -> frame, one
clock) and CPU milliseconds per delivered event for every process, the load generator included.

    .venv/bin/python -m bench.hotpath [--users 200] [--rates 100,300,1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from devtools.topology import Topology
from gateway.auth import mint_hs256

SECRET = "bench-secret-bench-secret-bench-secret"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pids(topo: Topology) -> dict[str, int]:
    out = {"loadgen": os.getpid()}
    jaeger = topo.jaeger.proc if topo.jaeger is not None else None
    for name, proc in (("redis", topo.redis), ("placement", topo.placement), ("jaeger", jaeger)):
        if proc is not None and proc.popen is not None:
            out[name] = proc.popen.pid
    for name, a in topo.apps.items():
        for kind, p in (("app", a.app), ("daprd", a.sidecar)):
            if p is not None and p.popen is not None:
                out[f"{name}.{kind}"] = p.popen.pid
    return out


async def until(pred: Any, limit_s: float) -> bool:
    """Bounded polling of a counter the receive loops advance."""
    deadline = time.monotonic() + limit_s
    while not pred() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return bool(pred())


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


class Receivers:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.received = 0
        self.seqs: dict[str, list[int]] = {}
        self.ready = 0

    async def client(self, url: str, user: str, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {mint_hs256(SECRET, user)}"}
        async with websockets.connect(url, additional_headers=headers, max_queue=None) as ws:
            seqs = self.seqs.setdefault(user, [])
            welcomed = False
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    continue
                now = time.time()
                f = json.loads(raw)
                kind = f.get("type")
                if kind == "welcome" and not welcomed:
                    welcomed = True
                    self.ready += 1
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif "seq" in f and isinstance(f.get("data"), dict) and "sent_at" in f["data"]:
                    self.latencies.append((now - f["data"]["sent_at"]) * 1000)
                    self.received += 1
                    seqs.append(f["seq"])


async def step(topo: Topology, users: list[str], rx: Receivers, rate: float, seconds: float,
               rng: random.Random, profile: list[str], profile_dir: str) -> dict[str, Any]:
    prod = topo.apps["producer"]
    url = f"http://127.0.0.1:{prod.http_port}/v1.0/publish/pubsub/task-updates"
    rx.latencies.clear()
    rx.received = 0
    procs = pids(topo)
    profilers = [
        await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
            "-r", "200", "-d", str(int(seconds)), "-p", str(procs[name]),
            "-o", f"{profile_dir}/{name}-{int(rate)}.txt",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for name in profile if name in procs
    ]
    before = {n: cpu_s(p) for n, p in procs.items()}
    t_start = time.monotonic()
    total = int(rate * seconds)
    accepted = 0
    sem = asyncio.Semaphore(256)
    async with aiohttp.ClientSession(headers={"dapr-api-token": topo.api_token}) as http:

        async def publish(i: int) -> None:
            nonlocal accepted
            body = {"event_id": uuid.uuid4().hex, "type": "task_updated",
                    "audience": [rng.choice(users)],
                    "data": {"id": i, "title": f"t{i}", "sent_at": time.time()}}
            async with sem, http.post(url, json=body) as r:
                if r.status == 204:
                    accepted += 1

        tasks = []
        for i in range(total):
            delay = t_start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(publish(i)))
        await asyncio.gather(*tasks)
    # Bounded drain: late deliveries still count, up to 10 s after the last publish.
    await until(lambda: rx.received >= accepted, 10)
    elapsed = time.monotonic() - t_start
    after = {n: cpu_s(p) for n, p in procs.items()}
    for prof in profilers:
        await prof.wait()
    delivered = max(rx.received, 1)
    cpu_ms = {n: round((after[n] - before[n]) * 1000 / delivered, 3) for n in procs}
    server = sum(v for n, v in cpu_ms.items() if n != "loadgen")
    return {
        "offered_per_s": rate, "published": total, "accepted": accepted,
        "delivered": rx.received, "delivered_ratio": round(rx.received / max(accepted, 1), 4),
        "delivered_per_s": round(rx.received / seconds, 1),
        "p50_ms": round(pct(rx.latencies, 50), 2), "p99_ms": round(pct(rx.latencies, 99), 2),
        "p999_ms": round(pct(rx.latencies, 99.9), 2),
        "cpu_ms_per_event": cpu_ms, "server_cpu_ms_per_event": round(server, 3),
        "cpu_percent": {n: round((after[n] - before[n]) / elapsed * 100, 1) for n in procs},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    topo = Topology(Path(tempfile.mkdtemp(prefix="tasksync-hotpath-")), fixed_ports=False,
                    extra_env={"TASKSYNC_JWT_SECRET": SECRET, "LOG_LEVEL": "WARNING"})
    stop = asyncio.Event()
    try:
        topo.start()
        gateways = [n for n in topo.apps if n.startswith("gateway-")]
        users = [f"hp-{uuid.uuid4().hex[:6]}-{i}" for i in range(args.users)]
        rx = Receivers()
        clients = [
            asyncio.create_task(rx.client(
                f"ws://127.0.0.1:{topo.apps[gateways[i % len(gateways)]].app_port}/ws?device=d",
                u, stop))
            for i, u in enumerate(users)
        ]
        await until(lambda: rx.ready >= len(users), 60)
        steps = []
        rng = random.Random(7)
        for rate in args.rates:
            res = await step(topo, users, rx, rate, args.seconds, rng, args.profile,
                             args.profile_dir)
            print(json.dumps({k: v for k, v in res.items() if k != "cpu_percent"}), flush=True)
            steps.append(res)
        gaps = sum(1 for s in rx.seqs.values() if s and s != list(range(s[0], s[0] + len(s))))
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        return {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config": vars(args), "connections_with_gap_or_dup": gaps, "steps": steps}
    finally:
        stop.set()
        topo.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")],
                    default=[100.0, 300.0, 1000.0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="bench/results/hotpath.json")
    ap.add_argument("--profile", type=lambda s: s.split(","), default=[],
                    help="processes to sample with py-spy, e.g. sessions.app,gateway-gw-a.app")
    ap.add_argument("--profile-dir", default="/tmp")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
