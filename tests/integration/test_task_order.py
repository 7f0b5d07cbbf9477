"""Per-task order through the real runtime: producer daprd -> Redis Streams (competing consumers,
bulk subscribe) -> two gateway replicas -> UserSession actors -> two devices per user, one on each
replica. Every task's versions are published in a shuffled burst; each device must see each task's
versions strictly increasing, and every version not seen must be counted stale by the actor.

Completion is a positive condition polled with a deadline (frames seen + stale counted == events
published), then a barrier event per user proves nothing else was on its way."""

import asyncio
import random
import time
import uuid
from typing import Any

import pytest

from devtools.topology import Topology
from tests.integration.harness import WsClient, actor, publish

TASKS = 4
HOLD_S = 0.5  # TASKSYNC_ORDER_HOLD_SECONDS (default)
VERSIONS = 8  # v1 task_created, v2..v7 task_updated, v8 task_completed


def kind(version: int) -> str:
    return {1: "task_created", VERSIONS: "task_completed"}.get(version, "task_updated")


def versioned(user: str, task: int, version: int) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind(version),
        "audience": [user],
        "version": version,
        # The version is also in data, as the demo producer does: clients can compare.
        "data": {"id": task, "title": f"t{task} v{version}", "version": version},
    }


class Collector:
    """Reads one device's frames in the background (answering pings)."""

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            f = await self.client.next_frame(3600)
            if "seq" in f and "data" in f:
                self.events.append(f)
            elif f.get("type") == "ping":
                await self.client.send({"type": "pong"})

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.close()


async def stale_count(topo: Topology, user: str) -> tuple[int, int]:
    meta = (await actor(topo, "UserSession", user, "inspect"))["meta"]
    return int(meta["order"]["stale"]), int(meta["order"]["held"])


async def poll(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("mode", ["shuffled", "per_task_in_order"])
async def test_burst_keeps_each_task_in_version_order(topo: Topology, mode: str) -> None:
    """shuffled: the whole burst in random order, published within the hold window (0.5 s): the
    actor holds every version that comes before its predecessor and records it once the gap
    fills, so none is stale. per_task_in_order: each task's versions published one after
    another, all tasks at once; only the pub/sub reorders them."""
    rnd = random.Random(7)
    users = [f"order-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    devices = {u: [Collector(await WsClient.connect(topo, r, u)) for r in ("gw-a", "gw-b")]
               for u in users}
    tasks = {u: [100 + i * 10 + n for n in range(TASKS)] for i, u in enumerate(users)}
    burst = [versioned(u, t, v) for u in users for t in tasks[u] for v in range(1, VERSIONS + 1)]
    rnd.shuffle(burst)
    sem = asyncio.Semaphore(16)

    async def one(payload: dict[str, Any]) -> None:
        async with sem:
            await publish(topo, payload)

    started = time.monotonic()
    if mode == "shuffled":
        await asyncio.gather(*(one(p) for p in burst))
    else:
        async def chain(u: str, t: int) -> None:
            for p in [p for p in burst if p["audience"] == [u] and p["data"]["id"] == t]:
                await one(p)

        burst.sort(key=lambda p: p["version"])  # each task's payloads in version order
        await asyncio.gather(*(chain(u, t) for u in users for t in tasks[u]))
    published_in = time.monotonic() - started
    per_user = TASKS * VERSIONS

    async def settled(u: str) -> bool:
        stale, held = await stale_count(topo, u)
        return held == 0 and all(len(d.events) + stale == per_user for d in devices[u])

    for u in users:
        await poll(lambda u=u: settled(u), 60, f"{u}: every event appended or counted stale")

    # Barrier: a new task's first version; when it arrives, nothing older is still in flight.
    for u in users:
        await publish(topo, versioned(u, 999, 1))
        await poll(lambda u=u: _has(devices[u], 999), 30, f"{u}: barrier")

    for u in users:
        stale, held = await stale_count(topo, u)
        assert held == 0
        first, second = ([(f["data"]["id"], f["data"]["version"]) for f in d.events]
                         for d in devices[u])
        assert first == second  # both devices see the one order the actor recorded
        assert [f["seq"] for f in devices[u][0].events] == list(range(1, len(first) + 1))
        seen = [(t, v) for t, v in first if t != 999]
        for t in tasks[u]:
            versions = [v for task, v in seen if task == t]
            assert versions == sorted(set(versions)), f"task {t}: {versions}"
            assert versions[-1] == VERSIONS  # the newest version always gets through
        print(f"{mode} {u}: burst published in {published_in:.2f} s, {len(seen)} of {per_user} "
              f"versions shown, {stale} stale")
        # None is missing except those the actor counted as stale.
        assert len(seen) + stale == per_user, (len(seen), stale)
        # A burst published within the hold window reaches the actor within it (plus the
        # pub/sub's delivery jitter: on a loaded machine that could push a version past it).
        if published_in < HOLD_S:
            assert stale == 0, f"{stale} stale in a burst published in {published_in:.2f} s"
    for u in users:
        for d in devices[u]:
            await d.stop()


async def _has(devices: list[Collector], task: int) -> bool:
    return all(any(f["data"]["id"] == task for f in d.events) for d in devices)
