"""Overload without loss: a backlog larger than the old stream cap (maxLenApprox 10,000) while
both gateway apps are frozen, and every accepted event still reaches its user's log and its
client; afterwards the stream shrinks back, bounded by consumption."""

import asyncio
import signal
import uuid

import aiohttp

from devtools.topology import Topology
from tests.integration.harness import WsClient, actor, redis_cli

USERS = 100
PER_USER = 120  # retention in the test topology is 200: every event stays replayable
TOTAL = USERS * PER_USER  # 12,000 > the 10,000 the old count cap kept


async def publish_all(topo: Topology, users: list[str]) -> int:
    url = (f"http://127.0.0.1:{topo.apps['producer'].http_port}"
           "/v1.0/publish/pubsub/task-updates")
    sem = asyncio.Semaphore(64)
    accepted = 0
    async with aiohttp.ClientSession(headers={"dapr-api-token": topo.api_token}) as http:

        async def one(i: int) -> None:
            nonlocal accepted
            body = {"event_id": f"ovl-{i}-{uuid.uuid4().hex[:6]}", "type": "task_updated",
                    "audience": [users[i % USERS]], "data": {"id": i, "n": i // USERS}}
            async with sem, http.post(url, json=body) as r:
                assert r.status == 204, await r.text()
                accepted += 1

        await asyncio.gather(*(one(i) for i in range(TOTAL)))
    return accepted


async def wait_heads(topo: Topology, users: list[str], want: int, limit_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    pending = set(users)
    while pending:
        for u in list(pending):
            if (await actor(topo, "UserSession", u, "inspect"))["meta"]["head"] == want:
                pending.discard(u)
        assert loop.time() < deadline, f"{len(pending)} users short of {want} events"
        if pending:
            await asyncio.sleep(0.5)


async def test_backlog_beyond_the_old_cap_loses_nothing(topo: Topology) -> None:
    users = [f"ovl{i}-{uuid.uuid4().hex[:6]}" for i in range(USERS)]
    gateways = [a.app for n, a in topo.apps.items() if n.startswith("gateway-")]
    for p in gateways:
        assert p is not None
        p.signal(signal.SIGSTOP)
    try:
        assert await publish_all(topo, users) == TOTAL
        backlog = int(redis_cli(topo, "XLEN", "task-updates"))
        assert backlog >= TOTAL  # nothing was consumed, nothing was trimmed
    finally:
        for p in gateways:
            assert p is not None
            p.signal(signal.SIGCONT)

    # Every accepted event is recorded, once, in its user's log...
    await wait_heads(topo, users, PER_USER, limit_s=240)
    # ...and delivered to a client in order, without gap or duplicate.
    for i, u in enumerate(users):
        epoch = (await actor(topo, "UserSession", u, "inspect"))["meta"]["epoch"]
        c = await WsClient.connect(topo, ("gw-a", "gw-b")[i % 2], u, since=f"{epoch}:0")
        got = await c.events(PER_USER, timeout=30)
        assert [f["seq"] for f in got] == list(range(1, PER_USER + 1))
        assert sorted(f["data"]["n"] for f in got) == list(range(PER_USER))
        await c.close()

    # Bounded by consumption: the trimmer removes what every group read and acknowledged.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while int(redis_cli(topo, "XLEN", "task-updates")) > 100:
        assert loop.time() < deadline, "consumed entries were not trimmed"
        await asyncio.sleep(0.5)
