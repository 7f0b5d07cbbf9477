"""Metric rules without processes: the /metrics access check, what counts as a delivered frame,
the publish time read from a message, the scrape-time connection table."""

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics, protocol
from gateway.connection import Connection
from gateway.topic_schema import TopicLimits, parse_topic_message, published_time
from vocab.scrape import MetricsEndpoint


async def _call(ep: MetricsEndpoint, path: str, headers: dict[str, str],
                method: str = "GET") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "path": path, "method": method,
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    await ep(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def _inner(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"inner"})


def _endpoint(app_token: str | None = "app-tok", metrics_token: str | None = "") -> MetricsEndpoint:
    return MetricsEndpoint(_inner, lambda: (b"m 1\n", "text/plain"), app_token, metrics_token)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 403, id="no-token"),
        pytest.param({"dapr-api-token": "nope"}, 403, id="wrong-app-token"),
        pytest.param({"dapr-api-token": "app-tok"}, 200, id="app-token"),
        pytest.param({"authorization": "Bearer app-tok"}, 403, id="app-token-as-bearer"),
    ],
)
async def test_metrics_need_the_app_token(headers: dict[str, str], status: int) -> None:
    assert (await _call(_endpoint(), "/metrics", headers))[0] == status


async def test_a_metrics_token_is_accepted_as_bearer_only() -> None:
    ep = _endpoint(metrics_token="scrape-tok")
    assert (await _call(ep, "/metrics", {"authorization": "Bearer scrape-tok"}))[0] == 200
    assert (await _call(ep, "/metrics", {"authorization": "Bearer other"}))[0] == 403
    assert (await _call(ep, "/metrics", {"dapr-api-token": "scrape-tok"}))[0] == 403


async def test_no_token_configured_refuses_unless_insecure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKSYNC_INSECURE_NO_APP_TOKEN", raising=False)
    assert (await _call(_endpoint("", ""), "/metrics", {}))[0] == 403
    monkeypatch.setenv("TASKSYNC_INSECURE_NO_APP_TOKEN", "1")
    assert (await _call(_endpoint("", ""), "/metrics", {}))[0] == 200


async def test_other_paths_pass_through_and_post_is_refused() -> None:
    assert await _call(_endpoint(), "/metricsx", {}) == (299, b"inner")
    status, _ = await _call(_endpoint(), "/metrics", {"dapr-api-token": "app-tok"}, "POST")
    assert status == 405


def _value(name: str, **labels: str) -> float:
    text = metrics.render()[0].decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def test_only_event_frames_count_as_delivered() -> None:
    name = "tasksync_gateway_events_delivered_total"
    before = _value(name, transport="sse")
    metrics.delivered("sse", protocol.event_frame("task_updated", 1, "e1", {"id": 1}))
    metrics.delivered("sse", protocol.SharedFrame(protocol.event_frame("task_updated", 2, "e2",
                                                                       {"id": 1})))
    for other in (protocol.ping(1.0), protocol.welcome("c", "ep", 0, 15, False),
                  protocol.resync_required("ep", 0, "too_old"), protocol.error("x", "y")):
        metrics.delivered("sse", other)
    assert _value(name, transport="sse") == before + 2


@pytest.mark.parametrize(
    ("ts", "ce_time", "expected"),
    [
        pytest.param(1_700_000_000.25, None, 1_700_000_000.25, id="seconds"),
        pytest.param(1_700_000_000_250, None, 1_700_000_000.25, id="milliseconds"),
        pytest.param("2023-11-14T22:13:20.250Z", None, 1_700_000_000.25, id="iso-z"),
        pytest.param("2023-11-14T22:13:20.250", None, 1_700_000_000.25, id="iso-naive-utc"),
        pytest.param(None, "2023-11-14T22:13:20.5+00:00", 1_700_000_000.5, id="ce-fraction"),
        pytest.param(None, "2023-11-14T22:13:20Z", None, id="ce-whole-seconds-ignored"),
        pytest.param("yesterday", None, None, id="unparsable"),
        pytest.param(True, None, None, id="bool"),
        pytest.param(-5, None, None, id="negative"),
    ],
)
def test_publish_time(ts: Any, ce_time: Any, expected: float | None) -> None:
    got = published_time(ts, ce_time)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_publish_time_does_not_change_event_identity() -> None:
    msg = {"id": "ce", "time": "2023-11-14T22:13:20Z",
           "data": {"type": "task_updated", "data": {"id": 1}, "audience": ["u"], "ts": 5.0}}
    a = parse_topic_message(msg, 100, TopicLimits())
    b = parse_topic_message({**msg, "data": {**msg["data"], "ts": 6.0}}, 100, TopicLimits())
    assert (a.published_at, b.published_at) == (5.0, 6.0) and a == b


def test_connections_and_queue_depths_are_read_on_scrape() -> None:
    conns = {}
    for i, (transport, queued) in enumerate([("websocket", 0), ("websocket", 3), ("sse", 600)]):
        c = Connection(f"c{i}", "u", "d", transport, queue_max=1000, max_held=8, expires_at=1e12)
        for _ in range(queued):
            c.push(protocol.ping(0.0))
        conns[c.conn_id] = c
    hub = SimpleNamespace(conns=conns, tail_fills=0, draining=False)
    fanout = SimpleNamespace(events=7, stale=1, held=0, released=0, actor_calls=3, forwards=2,
                             bugs=0)
    metrics.bind(SimpleNamespace(hub=hub, fanout=fanout))  # type: ignore[arg-type]
    try:
        assert _value("tasksync_gateway_connections", transport="websocket") == 2
        assert _value("tasksync_gateway_connections", transport="sse") == 1
        depth = "tasksync_gateway_send_queue_depth"
        assert _value(f"{depth}_bucket", le="0.0") == 1
        assert _value(f"{depth}_bucket", le="5.0") == 2
        assert _value(f"{depth}_bucket", le="500.0") == 2
        assert _value(f"{depth}_bucket", le="1000.0") == 3
        assert _value(f"{depth}_sum") == 603
        assert _value("tasksync_gateway_events_received_total") == 7
    finally:
        metrics.TABLE.ctx = None
