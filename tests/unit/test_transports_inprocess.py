"""The gateway app in-process on the in-memory sessions backend: both transports and the client
frame handler, end to end through the real ASGI app (no daprd), fast and deterministic."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from actors.session_core import EventRecord, IncomingEvent
from actors.wire import pack
from gateway.app import create_app
from gateway.auth import AuthConfig, mint_hs256
from gateway.config import Settings
from gateway.forwards import ForwardBatch, ForwardItem
from gateway.peers import FORWARD_PATH
from gateway.sessions_memory import MemorySessions, World
from gateway.topic_schema import TaskEvent

SECRET = "in-process-secret-in-process-secret"


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    settings = Settings(replica_id="gw-a", advertise_url="mem://gw-a", tail_check_s=0,
                        allowed_origins=("http://testserver",))
    app = create_app(settings, AuthConfig(hs_secret=SECRET), MemorySessions("gw-a", world))
    with TestClient(app) as c:
        yield c


def publish(client: TestClient, user: str, n: int) -> list[bool]:
    fanout = client.app.state.ctx.fanout  # type: ignore[attr-defined]
    ev = TaskEvent(IncomingEvent(f"e{n}", "task_updated", {"id": n}, str(n), None), (user,))
    return client.portal.call(fanout.handle_batch, [ev])  # type: ignore[union-attr, no-any-return]


async def gone(client: TestClient) -> None:
    """The server side of a closed socket finishes its cleanup (bounded wait)."""
    hub = client.app.state.ctx.hub  # type: ignore[attr-defined]
    async with asyncio.timeout(5):
        while hub.conns:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_hs256(SECRET, user)}"}


def next_event(ws: Any) -> dict[str, Any]:
    while True:
        frame = ws.receive_json()
        if frame.get("type") != "ping":
            return dict(frame)


def test_websocket_welcome_live_events_ack_and_user_filters(
    client: TestClient, world: World
) -> None:
    with client.websocket_connect("/ws?device=d1", headers=auth("alice")) as ws:
        welcome = ws.receive_json()
        assert welcome["type"] == "welcome" and welcome["seq"] == 0
        assert publish(client, "alice", 1) == [True]
        ev = next_event(ws)
        assert (ev["type"], ev["seq"], ev["data"]) == ("task_updated", 1, {"id": 1})
        ws.send_text(json.dumps({"type": "subscribe", "scope": "user",
                                 "filters": {"types": ["task_deleted"]}}))
        sub = next_event(ws)
        assert sub == {"type": "subscribed", "scope": "user",
                       "filters": {"types": ["task_deleted"], "task_ids": None,
                                   "list_ids": None}}
        assert world.sessions["alice"].meta.filters.types == frozenset({"task_deleted"})
        ws.send_text(json.dumps({"type": "ack", "seq": 1}))
        ws.send_text(json.dumps({"type": "ping"}))
        assert next_event(ws)["type"] == "pong"
        conn = next(iter(client.app.state.ctx.hub.conns.values()))  # type: ignore[attr-defined]
        assert conn.pending_ack == 1
        # Closing flushes the coalesced ack to the actor and detaches the connection (waited
        # for inside the block: leaving it cancels the app's task in the test client).
        ws.close(1000)
        client.portal.call(gone, client)  # type: ignore[union-attr]
    meta = world.sessions["alice"].meta
    assert meta.devices["d1"].seq == 1 and meta.conns == {}


def test_websocket_resume_gets_exactly_the_missed_events(client: TestClient) -> None:
    with client.websocket_connect("/ws?device=d1", headers=auth("bob")) as ws:
        epoch = ws.receive_json()["epoch"]
    for n in range(1, 6):
        publish(client, "bob", n)
    with client.websocket_connect(f"/ws?device=d1&since={epoch}:2", headers=auth("bob")) as ws:
        assert ws.receive_json()["resumed"] is True
        assert [next_event(ws)["seq"] for _ in range(3)] == [3, 4, 5]
    with client.websocket_connect("/ws?device=d2&since=otherepoch:1", headers=auth("bob")) as ws:
        ws.receive_json()
        assert next_event(ws)["type"] == "resync_required"


def test_batching_client_gets_a_replay_in_few_messages_in_order(client: TestClient) -> None:
    with client.websocket_connect("/ws?device=d1", headers=auth("bea")) as ws:
        epoch = ws.receive_json()["epoch"]
    for n in range(1, 301):
        publish(client, "bea", n)
    since = f"{epoch}:0"
    with client.websocket_connect(f"/ws?device=d1&since={since}&batch=1",
                                  headers=auth("bea")) as ws:
        assert ws.receive_json()["type"] == "welcome"
        seqs: list[int] = []
        messages = 0
        while len(seqs) < 300:
            msg = next_event(ws)
            messages += 1
            inner = msg["frames"] if msg["type"] == "batch" else [msg]
            assert all("seq" in f and "data" in f for f in inner), msg  # events only
            seqs += [f["seq"] for f in inner]
        assert seqs == list(range(1, 301))
        assert messages < 300 // 2  # queued frames left together
    # Without batch=1 the same replay is one message per event.
    with client.websocket_connect(f"/ws?device=d2&since={since}", headers=auth("bea")) as ws:
        ws.receive_json()
        assert [next_event(ws)["seq"] for _ in range(300)] == list(range(1, 301))


def test_bad_frames_get_errors_and_the_connection_lives(client: TestClient) -> None:
    with client.websocket_connect("/ws", headers=auth("carol")) as ws:
        ws.receive_json()
        ws.send_text("{not json")
        assert next_event(ws)["code"] == "bad_frame"
        ws.send_text(json.dumps({"type": "refresh", "token": mint_hs256(SECRET, "mallory")}))
        assert next_event(ws)["code"] == "bad_token"
        publish(client, "carol", 7)
        assert next_event(ws)["seq"] == 1


def test_sse_stream_and_its_posts(client: TestClient) -> None:
    with client.stream("GET", "/sse?device=s1", headers=auth("dave")) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        welcome = json.loads(next(ln for ln in lines if ln.startswith("data: "))[6:])
        assert welcome["type"] == "welcome"
        conn_id = welcome["conn_id"]
        publish(client, "dave", 3)
        event_id = next(ln for ln in lines if ln.startswith("id: "))
        data = json.loads(next(ln for ln in lines if ln.startswith("data: "))[6:])
        # SSE ids are resume points: the user position, then the broadcast stream's.
        bpos = f"{welcome['bepoch']}:{welcome['bseq']}"
        assert event_id == f"id: {welcome['epoch']}:1,{bpos}" and data["data"] == {"id": 3}
        r = client.post(f"/sse/{conn_id}/ack", json={"seq": 1}, headers=auth("dave"))
        assert r.status_code in (200, 202, 204)
        other = client.post(f"/sse/{conn_id}/ack", json={"seq": 1}, headers=auth("eve"))
        assert other.status_code == 404  # another user's connection does not exist for them


def test_a_forwarded_batch_reaches_the_socket_and_a_malformed_one_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /internal/forward (served past FastAPI's routing, behind the token check)."""
    monkeypatch.setenv("APP_API_TOKEN", "t0k")
    settings = Settings(replica_id="gw-a", advertise_url="mem://gw-a", tail_check_s=0)
    app = create_app(settings, AuthConfig(hs_secret=SECRET), MemorySessions("gw-a", world))
    token = {"dapr-api-token": "t0k"}
    with TestClient(app) as c, c.websocket_connect("/ws?device=d1", headers=auth("fay")) as ws:
        welcome = ws.receive_json()
        conn = next(iter(c.app.state.ctx.hub.conns))  # type: ignore[attr-defined]
        record = EventRecord(1, "fw1", "task_updated", {"id": 1}, None, None, 0)
        item = ForwardItem("fay", [conn], welcome["epoch"], record)
        body = pack(ForwardBatch("gw-b", [item]).to_wire())
        assert c.post(FORWARD_PATH, content=body).status_code == 403  # no token
        assert c.post(FORWARD_PATH, content=body, headers=token).status_code == 200
        assert next_event(ws)["id"] == "fw1"
        bad = c.post(FORWARD_PATH, content=b"\xc1not msgpack", headers=token)
        assert bad.status_code == 400 and bad.json()["error"] == "bad_batch"
