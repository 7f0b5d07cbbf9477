"""Two sessions host replicas: kill -9 one (app + daprd) while events flow. Placement moves its
UserSession actors to the other; their state is in Redis, so every device still gets every
event exactly once, in seq order, with no gap and no resync."""

import asyncio
import contextlib
import json
import time
import urllib.request
import uuid
from typing import Any

from devtools.topology import Topology
from tests.integration.harness import WsClient, event, publish

USERS, ROUNDS = 10, 12  # rounds 0-3 before the kill, 4-7 racing it, 8-11 after


def active_user_sessions(topo: Topology, name: str) -> int:
    """UserSession actors active on one replica, from its daprd's metadata."""
    a = topo.apps[name]
    req = urllib.request.Request(
        f"http://127.0.0.1:{a.http_port}/v1.0/metadata",
        headers={"dapr-api-token": topo.api_token},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        meta = json.load(r)
    for t in (meta.get("actorRuntime") or {}).get("activeActors") or []:
        if t.get("type") == "UserSession":
            return int(t.get("count", 0))
    return 0


class Device:
    """Reads every frame in the background, answering pings, so no wait starves it."""

    def __init__(self, c: WsClient) -> None:
        self.c = c
        self.events: list[dict[str, Any]] = []
        self.other: list[dict[str, Any]] = []
        self.closed: BaseException | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                f = await self.c.next_frame(timeout=3600)
                if f.get("type") == "ping":
                    await self.c.send({"type": "pong"})
                elif "seq" in f and "data" in f:
                    self.events.append(f)
                else:
                    self.other.append(f)
        except Exception as e:  # the test reports it
            self.closed = e

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        await self.c.close()


async def wait_all(devs: list[Device], n: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while any(len(d.events) < n for d in devs):
        dead = [d for d in devs if d.closed is not None]
        assert not dead, f"device connection ended: {dead[0].closed!r}"
        if time.monotonic() > deadline:
            short = sorted(len(d.events) for d in devs)[:5]
            raise TimeoutError(f"{what}: fewest events per device {short}, want {n}")
        await asyncio.sleep(0.1)


async def test_sessions_replica_kill_loses_and_duplicates_nothing(topo: Topology) -> None:
    replicas = [a.name for a in topo.replicas("sessions")]
    assert len(replicas) == 2, replicas
    before = {r: active_user_sessions(topo, r) for r in replicas}
    users = [f"fo-{uuid.uuid4().hex[:8]}" for _ in range(USERS)]
    devs: dict[str, list[Device]] = {}
    epochs: dict[str, str] = {}
    for u in users:
        a = await WsClient.connect(topo, "gw-a", u, device="a")
        b = await WsClient.connect(topo, "gw-b", u, device="b")
        epochs[u] = a.welcome["epoch"]
        devs[u] = [Device(a), Device(b)]
    every = [d for ds in devs.values() for d in ds]
    published: dict[str, list[str]] = {u: [] for u in users}

    async def rounds(first: int, last: int) -> None:
        for r in range(first, last):
            for u in users:
                ev = event("task_updated", r, audience=[u])
                published[u].append(ev["event_id"])
                await publish(topo, ev)

    victim = ""
    try:
        await rounds(0, 4)
        await wait_all(every, 4, 60, "events before the kill")
        # Kill the replica hosting more of our users (each connect activated its actor).
        grew = {r: active_user_sessions(topo, r) - before[r] for r in replicas}
        victim = max(grew, key=lambda r: grew[r])
        assert grew[victim] >= 1, grew
        racing = asyncio.create_task(rounds(4, 8))
        await asyncio.sleep(0)  # let the first publishes of the race go out
        await asyncio.to_thread(topo.kill_app, victim)  # SIGKILL app and daprd
        await racing
        await rounds(8, ROUNDS)
        await wait_all(every, ROUNDS, 120, "every event after the kill")
        # Barrier: anything duplicated would carry a seq below it and so arrive before it.
        for u in users:
            ev = event("task_completed", 999, audience=[u])
            published[u].append(ev["event_id"])
            await publish(topo, ev)
        await wait_all(every, ROUNDS + 1, 60, "barrier")
        for u in users:
            a, b = devs[u]
            for d in (a, b):
                assert [f["seq"] for f in d.events] == list(range(1, ROUNDS + 2)), (u, d.events)
                assert sorted(f["id"] for f in d.events) == sorted(published[u]), u
                assert not [f for f in d.other if f.get("type") == "resync_required"], d.other
            assert [f["id"] for f in a.events] == [f["id"] for f in b.events]
        # Only the survivor runs now, so every one of our users is active there.
        (survivor,) = [r for r in replicas if r != victim]
        assert active_user_sessions(topo, survivor) >= USERS
        print(f"killed {victim} (hosted {grew[victim]} of {USERS} users); nothing lost")
    finally:
        for d in every:
            await d.close()
        if victim:
            await asyncio.to_thread(topo.start_app, victim)
            await asyncio.to_thread(topo.wait_app, victim)
