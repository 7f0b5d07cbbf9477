"""Supervision (opt-in, on in the run command): a crashed process comes back by itself, with
backoff, and the restart is logged. Own small topology (one sessions host, one gateway), with
Redis AOF on, so the shared suite topology keeps deterministic kill/start by name."""

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.procs import wait_until
from devtools.supervisor import Backoff
from devtools.topology import Topology, http_status
from tests.integration.conftest import TEST_ENV, run_topology
from tests.integration.harness import (
    WsClient,
    event,
    keepalive,
    poll_until,
    publish,
    redis_cli,
)

GW = "gateway-gw-a"


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_run() -> None:
    b = Backoff()
    assert [b.next_delay(uptime=1) for _ in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert b.next_delay(uptime=30) == 0.5  # stayed up 30 s: a fresh start
    assert b.next_delay(uptime=2) == 1


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    t = Topology(
        Path(tmp_path_factory.mktemp("supervised")),
        fixed_ports=False,
        extra_env=dict(TEST_ENV),
        supervise=True,
        redis_aof=True,
    )
    yield from run_topology(t, names=["sessions-s1", GW])


def supervisor_log(t: Topology) -> str:
    return (t.log_dir / "supervisor.log").read_text()


async def test_sigkilled_gateway_app_is_restarted_serving_and_logged(sup: Topology) -> None:
    a = sup.apps[GW]
    assert a.app is not None and a.app.pid is not None
    old = a.app.pid
    os.kill(old, signal.SIGKILL)  # a crash from outside, not kill_app (which means "leave down")

    def back() -> bool:
        assert a.app is not None
        return (
            a.app.pid != old
            and a.app.alive
            and http_status(f"http://127.0.0.1:{a.app_port}/readyz") == 200
        )

    wait_until(back, 60, "restarted gateway app answering /readyz")
    log = supervisor_log(sup)
    assert f"{GW}.app (pid {old}) died: signal SIGKILL" in log
    assert "restart attempt 1 in 0.5s" in log
    assert f"{GW}.app restarted: pid {a.app.pid}, attempt 1" in log
    # Serving for real: a client gets an event published through the gateway's daprd.
    u = f"sup-{uuid.uuid4().hex[:8]}"
    c = await WsClient.connect(sup, "gw-a", u)
    await publish(sup, event("task_created", 1, audience=[u]), via=GW)
    (ev,) = await c.events(1, timeout=30)
    assert ev["seq"] == 1
    await c.close()


async def test_sigkilled_redis_is_restarted_with_its_aof_data(sup: Topology) -> None:
    u = f"aof-{uuid.uuid4().hex[:8]}"
    c = await WsClient.connect(sup, "gw-a", u)
    epoch = c.welcome["epoch"]
    for i in range(3):
        await publish(sup, event("task_updated", i, audience=[u]), via=GW)
    assert [f["seq"] for f in await c.events(3)] == [1, 2, 3]
    alive = asyncio.create_task(keepalive(c))
    # The AOF buffer reaches the file (page cache) before Redis answers, unless a slow fsync
    # postponed it: wait until nothing is buffered, then a SIGKILL loses nothing.
    await poll_until(
        lambda: "aof_buffer_length:0" in redis_cli(sup, "info", "persistence"), 10, "AOF flushed"
    )
    assert sup.redis is not None and sup.redis.pid is not None
    old = sup.redis.pid
    os.kill(old, signal.SIGKILL)

    def redis_back() -> bool:
        assert sup.redis is not None
        info = redis_cli(sup, "info", "persistence")
        return sup.redis.pid != old and "loading:0" in info

    await poll_until(redis_back, 60, "restarted redis, AOF loaded")
    assert f"redis (pid {old}) died: signal SIGKILL" in supervisor_log(sup)
    keys = redis_cli(sup, "--scan", "--pattern", f"sessions||UserSession||{u}||*").split()
    # meta and the chunk holding seqs 1-3 (actors/session_storage.py)
    assert {f"sessions||UserSession||{u}||{k}" for k in ("meta", "c:0")} <= set(keys)
    # The log continues where it was (same epoch, next seq) once daprd reconnects to Redis.
    await publish(sup, event("task_completed", 9, audience=[u]), via=GW)
    alive.cancel()
    (ev,) = await c.events(1, timeout=60)
    assert ev["seq"] == 4 and ev["data"]["id"] == 9
    await c.close()
    again = await WsClient.connect(sup, "gw-a", u, since=f"{epoch}:0")
    assert again.welcome["epoch"] == epoch
    assert [f["seq"] for f in await again.events(4)] == [1, 2, 3, 4]
    await again.close()
