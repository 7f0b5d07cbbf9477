"""End-to-end latency: publish to `task-updates` -> event frame on a client WebSocket.

Starts its own real topology (Redis, placement, sessions host, two gateways, producer daprd) on
free loopback ports, connects every user on BOTH gateways (so each event is delivered once
locally and once through the per-replica topic), publishes at a modest fixed rate and records
publish->receive latency. A baseline measured in the same run, a bare actor call through daprd,
puts the figures in proportion on this shared, noisy machine.

    .venv/bin/python -m bench.latency [--users 20] [--events 600] [--rate 40]
"""

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets

from actors.wire import pack
from devtools.topology import Topology
from gateway.auth import mint_hs256

SECRET = "bench-secret-bench-secret-bench-secret"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50_ms": round(pct(xs, 50), 2), "p90_ms": round(pct(xs, 90), 2),
            "p99_ms": round(pct(xs, 99), 2), "max_ms": round(max(xs), 2),
            "mean_ms": round(statistics.fmean(xs), 2)}


async def baseline(topo: Topology, n: int) -> list[float]:
    gw = topo.apps["gateway-gw-a"]
    out = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}",
                                 headers={"dapr-api-token": topo.api_token}) as c:
        for i in range(n):
            t0 = time.perf_counter()
            r = await c.put(f"/v1.0/actors/UserSession/bench-baseline-{i % 10}/method/inspect",
                            content=pack({}))
            out.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200
    return out


async def stats(topo: Topology) -> dict[str, int]:
    total = {"events": 0, "actor_calls": 0, "forwards": 0}
    async with httpx.AsyncClient() as c:
        for name in ("gateway-gw-a", "gateway-gw-b"):
            r = await c.get(f"http://127.0.0.1:{topo.apps[name].app_port}/internal/stats",
                            headers={"dapr-api-token": topo.app_token})
            for k in total:
                total[k] += int(r.json()[k])
    return total


async def run(args: argparse.Namespace) -> dict[str, Any]:
    topo = Topology(Path(tempfile.mkdtemp(prefix="tasksync-bench-")), fixed_ports=False,
                    extra_env={"TASKSYNC_JWT_SECRET": SECRET, "LOG_LEVEL": "WARNING"})
    try:
        t0 = time.monotonic()
        topo.start()
        startup_s = time.monotonic() - t0
        users = [f"bench-{uuid.uuid4().hex[:6]}-{i}" for i in range(args.users)]
        lat: list[float] = []
        received: dict[tuple[str, str], list[int]] = {}
        done = asyncio.Event()
        expected = args.events * 2

        async def client(user: str, replica: str) -> None:
            port = topo.apps[f"gateway-{replica}"].app_port
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/ws?device={replica}",
                additional_headers={"Authorization": f"Bearer {mint_hs256(SECRET, user)}"},
            ) as ws:
                seqs = received.setdefault((user, replica), [])
                async for raw in ws:
                    now = time.time()
                    f = json.loads(raw)
                    if f.get("type") == "ping":
                        await ws.send('{"type":"pong"}')
                    elif "data" in f and "sent_at" in f["data"]:
                        lat.append((now - f["data"]["sent_at"]) * 1000)
                        seqs.append(f["seq"])
                        if len(lat) >= expected:
                            done.set()

        tasks = [asyncio.create_task(client(u, r)) for u in users for r in ("gw-a", "gw-b")]
        # Every connection attached (welcome) before publishing: poll the gateways' counters.
        async with httpx.AsyncClient() as c:
            for _ in range(200):
                n = 0
                for name in ("gateway-gw-a", "gateway-gw-b"):
                    r = await c.get(f"http://127.0.0.1:{topo.apps[name].app_port}/internal/stats",
                                    headers={"dapr-api-token": topo.app_token})
                    n += int(r.json()["connections"])
                if n == len(tasks):
                    break
                await asyncio.sleep(0.05)
        base = await baseline(topo, args.baseline)
        before = await stats(topo)
        prod = topo.apps["producer"]
        rng = random.Random(7)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{prod.http_port}",
                                     headers={"dapr-api-token": topo.api_token}) as pub:
            period = 1.0 / args.rate
            start = time.monotonic()
            for i in range(args.events):
                await asyncio.sleep(max(0.0, start + i * period - time.monotonic()))
                user = rng.choice(users)
                body = {"event_id": uuid.uuid4().hex, "type": "task_updated", "audience": [user],
                        "data": {"id": i, "title": f"t{i}", "sent_at": time.time()}}
                r = await pub.post("/v1.0/publish/pubsub/task-updates", json=body)
                assert r.status_code == 204, r.text
        try:
            await asyncio.wait_for(done.wait(), 60)
        except TimeoutError:
            pass
        after = await stats(topo)
        for t in tasks:
            t.cancel()
        gaps = sum(1 for s in received.values() if s != list(range(1, len(s) + 1)))
        events = after["events"] - before["events"]
        e2e = summary(lat)
        b = summary(base)
        return {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": vars(args),
            "startup_to_ready_s": round(startup_s, 1),
            "received": len(lat), "expected": expected, "connections_with_gap_or_dup": gaps,
            "end_to_end": e2e,
            "baseline_actor_call": b,
            "ratio_p50_e2e_over_actor_call": round(e2e["p50_ms"] / b["p50_ms"], 1),
            "actor_calls_per_event": round((after["actor_calls"] - before["actor_calls"])
                                           / max(1, events), 2),
            "forwards_per_event": round((after["forwards"] - before["forwards"])
                                        / max(1, events), 2),
        }
    finally:
        topo.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--events", type=int, default=600)
    ap.add_argument("--rate", type=float, default=40.0, help="events per second")
    ap.add_argument("--baseline", type=int, default=300, help="baseline actor calls")
    ap.add_argument("--out", default="bench/results/latency.json")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
