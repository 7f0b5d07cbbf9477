"""The operator API (gateway/admin.py) and its CLI against the running system: auth, a user's
connections across replicas, the session without payloads, disconnect with a chosen code,
replica status, drain; a test publish from the CLI."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import websockets

from devtools.topology import ROOT, Topology
from tests.integration.harness import ADMIN_TOKEN, WsClient, event, gw_port, publish

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def admin(topo: Topology, replica: str, method: str, path: str,
                body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
                ) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(method, f"http://127.0.0.1:{gw_port(topo, replica)}{path}",
                                  json=body, headers=AUTH if headers is None else headers)


async def close_code(c: WsClient, timeout: float = 10) -> int:
    try:
        while True:
            await asyncio.wait_for(c.ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        assert e.rcvd is not None
        return e.rcvd.code


async def test_admin_routes_refuse_without_the_admin_token(topo: Topology) -> None:
    for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"},
                    {"dapr-api-token": topo.app_token},  # the app token is not the admin token
                    {"authorization": f"Basic {ADMIN_TOKEN}"}):
        for method, path in (("GET", "/admin/replicas"), ("GET", "/admin/users/x/session"),
                             ("POST", "/admin/users/x/disconnect"),
                             ("POST", "/admin/local/drain")):
            r = await admin(topo, "gw-a", method, path, {"code": 4011}, headers)
            assert r.status_code == 401, (headers, path, r.status_code)
    assert (await admin(topo, "gw-a", "GET", "/admin/replicas")).status_code == 200


async def test_connections_session_and_disconnect_across_replicas(topo: Topology) -> None:
    u = uid("admin")
    a = await WsClient.connect(topo, "gw-a", u, device="laptop")
    b = await WsClient.connect(topo, "gw-b", u, device="phone")
    secret = f"payload-{uuid.uuid4().hex}"
    await publish(topo, event("task_updated", 42, audience=[u], title=secret))
    await a.events(1)
    await b.events(1)

    r = await admin(topo, "gw-a", "GET", f"/admin/users/{u}/connections")
    assert r.status_code == 200, r.text
    per = r.json()["replicas"]
    assert [c["conn_id"] for c in per["gw-a"]] == [a.welcome["conn_id"]]
    assert [c["conn_id"] for c in per["gw-b"]] == [b.welcome["conn_id"]]
    assert per["gw-b"][0]["device"] == "phone" and per["gw-b"][0]["last_seq"] == 1

    r = await admin(topo, "gw-b", "GET", f"/admin/users/{u}/session")
    assert r.status_code == 200, r.text
    assert secret not in r.text and "payload-" not in r.text
    s = r.json()
    assert (s["epoch"], s["head"], s["tail"], s["retained"]) == (a.welcome["epoch"], 1, 1, 1)
    assert s["retention"]["max_events"] == 200
    assert set(s["devices"]) == {"laptop", "phone"}
    assert s["connections_per_replica"] == {"gw-a": 1, "gw-b": 1}
    assert s["positions"]["gw-a"][0]["last_seq"] == 1

    # One connection, on the other replica, with a code by name: only it closes.
    r = await admin(topo, "gw-a", "POST", f"/admin/users/{u}/disconnect",
                    {"code": "slow_consumer", "conn": b.welcome["conn_id"]})
    assert r.status_code == 200, r.text
    assert r.json()["replicas"]["gw-b"]["closed"] == [b.welcome["conn_id"]]
    assert r.json()["replicas"]["gw-a"]["closed"] == []
    assert await close_code(b) == 4010
    await publish(topo, event("task_updated", 43, audience=[u]))
    assert (await a.events(1))[0]["seq"] == 2  # still connected
    # Every connection of the user, by number.
    r = await admin(topo, "gw-b", "POST", f"/admin/users/{u}/disconnect", {"code": 4001})
    assert r.status_code == 200, r.text
    assert await close_code(a) == 4001
    bad = await admin(topo, "gw-a", "POST", f"/admin/users/{u}/disconnect", {"code": 4999})
    assert bad.status_code == 400


def cli(topo: Topology, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.admin_cli", "--run-dir", "/nonexistent", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "TASKSYNC_ADMIN_URL": f"http://127.0.0.1:{gw_port(topo, 'gw-b')}",
             "TASKSYNC_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})})
    assert out.returncode == 0, out.stdout + out.stderr
    return dict(json.loads(out.stdout))


async def test_cli_replicas_publish_and_session(topo: Topology) -> None:
    u = uid("cli")
    c = await WsClient.connect(topo, "gw-a", u)
    producer = topo.apps["producer"]
    url = f"http://127.0.0.1:{producer.http_port}/v1.0/publish/pubsub/task-updates"
    sent = await asyncio.to_thread(cli, topo, "publish", "--audience", u, "--task", "5",
                                   "--publish-url", url,
                                   env={"DAPR_API_TOKEN": topo.api_token})
    assert sent["status"] == 204
    (ev,) = await c.events(1)
    assert ev["id"] == sent["event_id"] and ev["data"]["id"] == 5
    status = await asyncio.to_thread(cli, topo, "replicas")
    assert {"gw-a", "gw-b"} <= set(status)
    assert status["gw-a"]["connections"] >= 1 and status["gw-b"]["draining"] is False
    session = await asyncio.to_thread(cli, topo, "session", u)
    assert session["head"] == 1
    await c.close()


async def test_drain_closes_a_replicas_clients_with_4011(topo: Topology) -> None:
    u = uid("drain")
    c = await WsClient.connect(topo, "gw-b", u)
    try:
        r = await admin(topo, "gw-a", "POST", "/admin/replicas/gw-b/drain")
        assert r.status_code == 200, r.text
        assert r.json()["draining"] is True and r.json()["closed"] >= 1
        assert await close_code(c) == 4011
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await http.get(f"http://127.0.0.1:{gw_port(topo, 'gw-b')}/readyz")
        assert ready.status_code == 503
        # The client resumes on the other replica.
        again = await WsClient.connect(topo, "gw-a", u)
        await again.close()
    finally:
        # Drain is one-way: the replica is restarted, as an orchestrator would.
        await asyncio.to_thread(topo.stop_app, "gateway-gw-b")
        await asyncio.to_thread(topo.start_app, "gateway-gw-b")
        await asyncio.to_thread(topo.wait_app, "gateway-gw-b")
