"""gateway/tracing.py: W3C traceparent parsing (table), the active context per delivery task, and
the in-process path of a traced event (Hub + Fanout on the in-memory sessions backend): the frame
carries the context, a forward carries it to the other replica, and the socket write is a span of
that trace. The path through real daprds and Jaeger: tests/integration/test_tracing.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors.session_core import EventRecord, IncomingEvent
from gateway import protocol, tracing
from gateway.forwards import ForwardBatch, ForwardItem
from gateway.topic_schema import TaskEvent, TopicLimits, parse_topic_message
from tests.unit.test_fanout_batches import Cluster

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
SAMPLED = f"00-{TRACE}-{SPAN}-01"
UNSAMPLED = f"00-{TRACE}-{SPAN}-00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SAMPLED, (TRACE, SPAN, 1)),
        (UNSAMPLED, (TRACE, SPAN, 0)),
        (f"00-{TRACE}-{SPAN}-03", (TRACE, SPAN, 3)),  # other flag bits kept
        # A later version may append fields: the first four are read, the rest ignored.
        (f"01-{TRACE}-{SPAN}-01-extra", (TRACE, SPAN, 1)),
        (f"01-{TRACE}-{SPAN}-01", (TRACE, SPAN, 1)),
        (f"ff-{TRACE}-{SPAN}-01", None),  # version ff is forbidden
        (f"00-{TRACE}-{SPAN}-01-extra", None),  # version 00 is exactly 55 chars
        (f"01-{TRACE}-{SPAN}-01x", None),  # a later version's extra fields follow a dash
        (f"00-{'0' * 32}-{SPAN}-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero span id
        (f"00-{TRACE.upper()}-{SPAN}-01", None),  # uppercase hex
        (f"00-{TRACE[:-1]}g-{SPAN}-01", None),
        (f"00_{TRACE}-{SPAN}-01", None),
        (f"00-{TRACE}-{SPAN}-0g", None),
        (f"0-{TRACE}-{SPAN}-011", None),
        (SAMPLED[:-1], None),
        ("", None),
        (None, None),
        (42, None),
        (["00", TRACE], None),
        ("x" * 10_000, None),
    ],
)
def test_parse(value: object, expected: tuple[str, str, int] | None) -> None:
    tp = tracing.parse(value)
    if expected is None:
        assert tp is None
        assert tracing.header_value(value) is None
    else:
        assert tp is not None and (tp.trace_id, tp.span_id, tp.flags) == expected
        assert tp.sampled == bool(expected[2] & 1)
        assert tracing.header_value(value) == f"00-{TRACE}-{SPAN}-{expected[2]:02x}"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("", "tasksync-gateway", "test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def test_off_nothing_is_adopted_and_writes_are_not_timed() -> None:
    assert not tracing.enabled()

    async def run() -> tuple[object, dict[str, str], int]:
        tracing.adopt(SAMPLED)
        return tracing.active(), tracing.with_header({"a": "b"}), tracing.write_started()

    active, headers, started = asyncio.run(run())
    assert active is None and headers == {"a": "b"} and started == 0


def test_on_only_sampled_contexts_are_adopted_and_only_in_their_task(
    spans: InMemorySpanExporter,
) -> None:
    async def task(tp: str | None) -> dict[str, str]:
        tracing.adopt(tp)
        await asyncio.sleep(0)
        return tracing.with_header({"content-type": "x"})

    async def run() -> list[dict[str, str]]:
        out = await asyncio.gather(task(SAMPLED), task(UNSAMPLED), task(None), task("junk"),
                                   task(f"00-{TRACE.upper()}-{SPAN}-01"))
        assert tracing.active() is None  # the caller's context is untouched
        return list(out)

    sampled, unsampled, absent, junk, upper = asyncio.run(run())
    assert sampled == {"content-type": "x", "traceparent": SAMPLED}
    assert unsampled == absent == junk == upper == {"content-type": "x"}


def test_topic_message_keeps_a_valid_traceparent_and_ignores_a_bad_one() -> None:
    def parse(tp: object) -> TaskEvent:
        env: dict[str, Any] = {"id": "ce-1", "data": {"type": "task_created", "data": {"id": 1},
                                        "audience": ["alice"]}, "traceparent": tp}
        return parse_topic_message(env, 100, TopicLimits())

    assert parse(SAMPLED).trace == SAMPLED
    # Kept as given (parsed only when tracing is on), bounded; never a reason to refuse.
    assert parse(f"00-{TRACE.upper()}-{SPAN}-01").trace == f"00-{TRACE.upper()}-{SPAN}-01"
    assert parse("x" * 513).trace is None
    assert parse({"x": 1}).trace is None


def test_forward_item_carries_the_trace_on_the_wire() -> None:
    rec = EventRecord(3, "e1", "task_created", {"id": 1}, "1", None, 1.0)
    with_trace = ForwardBatch("gw-a", [ForwardItem("alice", ["c1"], "ep", rec, SAMPLED)])
    back = ForwardBatch.from_wire(with_trace.to_wire())
    assert back.items[0].trace == SAMPLED
    plain = ForwardBatch("gw-a", [ForwardItem("alice", ["c1"], "ep", rec)])
    assert "trace" not in plain.to_wire()["items"][0]  # untraced forwards are unchanged
    assert ForwardBatch.from_wire(plain.to_wire()).items[0].trace is None
    bad = with_trace.to_wire()
    bad["items"][0]["trace"] = "nope"
    assert ForwardBatch.from_wire(bad).items[0].trace is None


def _event(n: int, user: str, trace: str | None) -> TaskEvent:
    return TaskEvent(IncomingEvent(f"e{n}", "task_updated", {"id": n}, str(n), None), (user,),
                     trace=trace)


def _bodies(conn: Any) -> list[dict[str, Any]]:
    out = []
    while not conn.queue.empty():
        frame, _ = conn.queue.get_nowait()
        body = protocol.body(frame)
        if "seq" in body and "data" in body:
            out.append(body)
    return out


async def test_traced_delivery_tags_local_and_forwarded_frames(
    spans: InMemorySpanExporter,
) -> None:
    c = Cluster()
    await c.start()
    a = await c.connect("gw-a", "alice")  # local to the replica that takes the batch
    b = await c.connect("gw-b", "bob")  # reached through a forward
    _bodies(a), _bodies(b)
    batch = [_event(1, "alice", SAMPLED), _event(2, "bob", SAMPLED), _event(3, "alice", None)]
    assert await c.fanouts["gw-a"].handle_batch(batch) == [True] * 3
    await asyncio.sleep(0.05)  # the loopback forward's outbox flush
    got_a, got_b = _bodies(a), _bodies(b)
    # One deliver per user: its first event's context applies to the frames it routes.
    assert [f.get("traceparent") for f in got_a] == [SAMPLED, SAMPLED]
    assert [f.get("traceparent") for f in got_b] == [SAMPLED]
    # An untraced batch stays untouched.
    assert await c.fanouts["gw-a"].handle_batch([_event(4, "alice", UNSAMPLED)]) == [True]
    assert [f.get("traceparent") for f in _bodies(a)] == [None]


def test_frame_write_is_a_span_of_the_frames_trace(spans: InMemorySpanExporter) -> None:
    started = tracing.write_started()
    assert started > 0
    frame = tracing.tag(protocol.event_frame("task_created", 7, "e7", {"id": 1}),
                        tracing.parse(SAMPLED))
    tracing.frame_written(frame, "websocket", "gw-a.c1", started)
    tracing.frame_written(protocol.ping(1.0), "websocket", "gw-a.c1", started)  # untraced
    (span,) = spans.get_finished_spans()
    assert span.name == tracing.SPAN_WRITE
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == TRACE
    assert f"{span.parent.span_id:016x}" == SPAN
    assert span.attributes is not None and span.attributes["tasksync.seq"] == 7
    assert span.attributes["tasksync.event"] == "e7"
    assert span.resource.attributes["service.name"] == "tasksync-gateway"
    assert span.start_time == started and span.end_time is not None
    assert span.end_time >= started


def test_new_traceparent_is_valid_and_random() -> None:
    a, b = tracing.parse(tracing.new_traceparent()), tracing.parse(tracing.new_traceparent())
    assert a is not None and b is not None and a.sampled and a.trace_id != b.trace_id
    off = tracing.parse(tracing.new_traceparent(sampled=False))
    assert off is not None and not off.sampled


def test_tracing_endpoint_setting() -> None:
    from pydantic import ValidationError

    from gateway.config import Settings

    assert Settings().tracing_endpoint == ""  # off unless set
    on = Settings(tracing_endpoint="http://127.0.0.1:4318")
    assert on.tracing_endpoint == "http://127.0.0.1:4318"
    with pytest.raises(ValidationError):
        Settings(tracing_endpoint="127.0.0.1:4318")  # a URL, not host:port


def test_per_run_dapr_config_points_at_the_runs_jaeger_or_turns_tracing_off(
    tmp_path: Any,
) -> None:
    import yaml

    from devtools.jaeger import dapr_config
    from devtools.topology import ROOT

    base = ROOT / "components" / "config" / "config.yaml"
    shipped = yaml.safe_load(base.read_text())["spec"]["tracing"]
    assert float(shipped["samplingRate"]) > 0 and shipped["otel"]["protocol"] == "http"
    on = yaml.safe_load(dapr_config(base, tmp_path / "on.yaml", "127.0.0.1:5555").read_text())
    assert on["spec"]["tracing"]["otel"]["endpointAddress"] == "127.0.0.1:5555"
    assert on["spec"]["tracing"]["samplingRate"] == shipped["samplingRate"]
    off = yaml.safe_load(dapr_config(base, tmp_path / "off.yaml", None).read_text())
    assert off["spec"]["tracing"] == {"samplingRate": "0"}
    assert off["spec"]["features"] == on["spec"]["features"]  # the rest is the shipped file's
