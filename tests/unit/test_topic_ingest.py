"""The topic route (gateway/topic_ingest.py) behind PostRoutes (vocab/asgi_io.py), driven at the
ASGI level against the in-memory sessions backend: a status per message, a status per bulk entry,
a 500 for a bug, and every other request handed to the app untouched."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.topic_ingest import TOPIC_PATH, TopicIngest
from gateway.topic_schema import TopicLimits
from tests.unit.test_fanout_batches import Cluster, break_fan_out, frames
from tests.unit.test_hostile_topic import HOSTILE, cloudevent
from vocab.asgi_io import PostRoutes


def message(n: int, user: str) -> bytes:
    return cloudevent({"event_id": f"m{n}", "type": "task_updated", "audience": [user],
                       "data": {"id": n}})


class Inner:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def post(app: PostRoutes, body: bytes, path: str = TOPIC_PATH,
               method: str = "POST") -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []
    chunks = [body[:7], body[7:]]  # a body in two parts, as a server may hand it over

    async def receive() -> dict[str, Any]:
        part = chunks.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(chunks)}

    async def send(m: Any) -> None:
        sent.append(m)

    await app({"type": "http", "path": path, "method": method, "headers": []}, receive, send)
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    return int(sent[0]["status"]), json.loads(payload) if payload else None


@pytest.fixture
async def cluster() -> Cluster:
    c = Cluster()
    await c.start()
    return c


def fast_path(cluster: Cluster, inner: Inner | None = None) -> PostRoutes:
    ingest = TopicIngest(cluster.fanouts["gw-a"], TopicLimits())
    return PostRoutes(inner or Inner(), {TOPIC_PATH: ingest.http})


async def test_messages_are_answered_one_status_each_and_reach_the_user(cluster: Cluster) -> None:
    conn = await cluster.connect("gw-a", "ann")
    frames(conn)
    app = fast_path(cluster)
    answers = await asyncio.gather(*(post(app, message(n, "ann")) for n in range(1, 4)))
    assert answers == [(200, {"status": "SUCCESS"})] * 3
    assert sorted(f["id"] for f in frames(conn)) == ["m1", "m2", "m3"]


async def test_an_invalid_message_is_dropped_alone(cluster: Cluster) -> None:
    app = fast_path(cluster)
    bad = cloudevent({"type": "task_exploded", "data": {"id": 1}})
    assert await post(app, bad) == (200, {"status": "DROP"})
    assert await post(app, message(9, "ann")) == (200, {"status": "SUCCESS"})


async def test_a_bulk_envelope_gets_a_status_per_entry(cluster: Cluster) -> None:
    app = fast_path(cluster)
    good = json.loads(message(1, "bo"))
    envelope = {"entries": [
        {"entryId": "a", "event": good},
        {"entryId": "b", "event": {"type": "task_exploded", "data": {"id": 2}}},
        {"event": good},  # no entryId: nothing to answer it with
    ]}
    status, answer = await post(app, json.dumps(envelope).encode())
    assert status == 200  # daprd matches statuses by entryId, in any order
    assert sorted(answer["statuses"], key=lambda s: s["entryId"]) == [
        {"entryId": "a", "status": "SUCCESS"}, {"entryId": "b", "status": "DROP"}]


async def test_a_bug_answers_500_so_daprd_retries(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fan = cluster.fanouts["gw-a"]
    break_fan_out(fan, monkeypatch)
    assert await post(fast_path(cluster), message(1, "cy")) == (500, {"error": "internal"})
    assert fan.bugs == 1


@pytest.mark.parametrize(("path", "method"), [
    ("/internal/dapr/task-updates/x", "POST"), (TOPIC_PATH, "GET"), ("/healthz", "GET")])
async def test_other_requests_go_to_the_app(cluster: Cluster, path: str, method: str) -> None:
    inner = Inner()
    assert (await post(fast_path(cluster, inner), b"", path, method))[0] == 404
    assert inner.paths == [path]


async def test_a_cloudevent_with_an_entries_field_is_one_message_not_a_bulk_envelope(
    cluster: Cluster,
) -> None:
    conn = await cluster.connect("gw-a", "ann")
    frames(conn)
    ce = json.loads(message(7, "ann"))
    app = fast_path(cluster)
    assert await post(app, json.dumps({**ce, "entries": []}).encode()) == (
        200, {"status": "SUCCESS"})
    assert [f["id"] for f in frames(conn)] == ["m7"]


@pytest.mark.parametrize(("raw", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
async def test_every_hostile_body_is_dropped_by_the_route_for_its_reason(
    cluster: Cluster, raw: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert await post(fast_path(cluster), raw) == (200, {"status": "DROP"})
    assert f"reason={reason} " in caplog.text
