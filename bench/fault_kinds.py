"""The faults a scenario injects (kill -9 of app/daprd parts, placement or Redis restarts,
SIGSTOP, a reconnect storm): each an async function of the topology and the running load."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.fault_clients import Load
from devtools.topology import Topology


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
