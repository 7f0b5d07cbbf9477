"""The floor of each hop a delivery crosses, measured alone on the real topology: CPU per call in
every process, for calls that do nothing else.

- publish to a topic nobody subscribes to (producer daprd + Redis only);
- a read-only actor call (gateway daprd -> sessions daprd -> sessions app, no state write);
- a deliver of one event to a user without connections (the same, plus ONE state transaction);
- a deliver of 10 events in one call (what batching per user buys);
- with --tracing (daprd tracing on, exporting to Jaeger; the hops above then measure what the
  unsampled 999 in 1,000 cost): a deliver of one event whose call carries a sampled traceparent
  (both daprds record and export their spans; Jaeger's CPU is counted).

    .venv/bin/python -m bench.hops [--calls 2000] [--concurrency 16] [--tracing]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from actors import contract as c
from actors.session_core import IncomingEvent
from actors.wire import pack
from bench.hotpath import SECRET, cpu_s, pids
from devtools.topology import Topology
from gateway.tracing import new_traceparent


async def measure(topo: Topology, n: int, conc: int,
                  call: Callable[[int], Awaitable[None]]) -> dict[str, Any]:
    procs = pids(topo)
    before = {k: cpu_s(p) for k, p in procs.items()}
    sem = asyncio.Semaphore(conc)
    t0 = time.monotonic()

    async def one(i: int) -> None:
        async with sem:
            await call(i)

    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.monotonic() - t0
    after = {k: cpu_s(p) for k, p in procs.items()}
    per_call = {k: round((after[k] - before[k]) * 1000 / n, 3) for k in procs}
    busy = {k: v for k, v in per_call.items() if v >= 0.005}
    return {"calls": n, "calls_per_s": round(n / wall), "cpu_ms_per_call": busy,
            "server_cpu_ms_per_call": round(sum(v for k, v in busy.items() if k != "loadgen"), 3)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    topo = Topology(Path(tempfile.mkdtemp(prefix="tasksync-hops-")), fixed_ports=False,
                    extra_env={"TASKSYNC_JWT_SECRET": SECRET, "LOG_LEVEL": "WARNING"},
                    tracing=args.tracing)
    try:
        topo.start()
        gw = topo.apps["gateway-gw-a"]
        prod = topo.apps["producer"]
        headers = {"dapr-api-token": topo.api_token}
        out: dict[str, Any] = {}
        async with aiohttp.ClientSession(headers=headers) as http:
            actor_url = f"http://127.0.0.1:{gw.http_port}/v1.0/actors/UserSession"

            async def put(user: str, method: str, body: dict[str, Any],
                          trace: str | None = None) -> None:
                async with http.put(f"{actor_url}/{user}/method/{method}", data=pack(body),
                                    headers={"traceparent": trace} if trace else None) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            async def publish(i: int) -> None:
                url = f"http://127.0.0.1:{prod.http_port}/v1.0/publish/pubsub/bench-noop"
                async with http.post(url, json={"i": i}) as r:
                    assert r.status == 204, await r.text()

            users = [f"hop-{uuid.uuid4().hex[:6]}-{i}" for i in range(200)]
            for u in users:  # activate every actor first: activation is not the hop
                await put(u, "read", c.ReadRequest("x", 0, 1).to_wire())

            def deliver(k: int, traced: bool = False) -> Callable[[int], Awaitable[None]]:
                async def call(i: int) -> None:
                    evs = [IncomingEvent(uuid.uuid4().hex, "task_updated", {"id": i}, str(i),
                                         None) for _ in range(k)]
                    await put(users[i % len(users)], "deliver",
                              c.DeliverRequest(evs).to_wire(),
                              new_traceparent() if traced else None)
                return call

            async def read(i: int) -> None:
                await put(users[i % len(users)], "read", c.ReadRequest("x", 0, 1).to_wire())

            out["publish_noop"] = await measure(topo, args.calls, args.concurrency, publish)
            out["actor_call_read_only"] = await measure(topo, args.calls, args.concurrency, read)
            out["deliver_1_event"] = await measure(topo, args.calls, args.concurrency,
                                                   deliver(1))
            out["deliver_10_events"] = await measure(topo, args.calls // 5, args.concurrency,
                                                     deliver(10))
            if args.tracing:
                out["deliver_1_event_traced"] = await measure(
                    topo, args.calls, args.concurrency, deliver(1, traced=True))
        return {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config": vars(args), "hops": out}
    finally:
        topo.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--tracing", action="store_true", help="daprd tracing on, to Jaeger")
    ap.add_argument("--out", default="bench/results/hops.json")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
