"""One contract suite, two backends: the UserSession actors through real daprd, and the in-memory
backend the gateway's in-process tests use. Both must answer every call alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from actors.session_core import Filters, IncomingEvent, Liveness
from devtools.topology import Topology
from gateway.actor_client import DaprClient
from gateway.sessions import Sessions, SessionsPort
from gateway.sessions_memory import MemorySessions

REPLICA = "gw-contract"
HOLD_S = 0.5  # TASKSYNC_ORDER_HOLD_SECONDS: the default, on both backends


@pytest_asyncio.fixture(params=["memory", "dapr"], loop_scope="session")
async def port(request: pytest.FixtureRequest, topo: Topology) -> AsyncIterator[SessionsPort]:
    if request.param == "memory":
        yield MemorySessions(REPLICA)
        return
    gw = topo.apps["gateway-gw-a"]
    dapr = DaprClient(f"http://127.0.0.1:{gw.http_port}", topo.api_token)
    yield Sessions(dapr, REPLICA)
    await dapr.close()


def user() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"


def ev(eid: str, type_: str = "task_updated", task: str = "t1") -> IncomingEvent:
    return IncomingEvent(eid, type_, {"title": eid, "when": "2024-01-02-abc"}, task, None)


async def test_deliver_batch_keeps_order_and_dedupes(port: SessionsPort) -> None:
    u = user()
    conn = await port.attach(u, f"{REPLICA}.c1", "d1", None, None)
    a = await port.deliver(u, [ev("a"), ev("b"), ev("a"), ev("c")], None)
    assert [(r.status, r.seq) for r in a.results] == [
        ("appended", 1), ("appended", 2), ("duplicate", 1), ("appended", 3)]
    assert a.epoch == conn.epoch and a.routes == {REPLICA: [f"{REPLICA}.c1"]}
    again = await port.deliver(u, [ev("b")], None)
    assert [(r.status, r.seq) for r in again.results] == [("duplicate", 2)]


async def test_attach_replays_and_refuses_unusable_positions(port: SessionsPort) -> None:
    u = user()
    first = await port.attach(u, f"{REPLICA}.c1", "d1", None, None)
    await port.deliver(u, [ev(f"e{i}") for i in range(5)], None)
    res = await port.attach(u, f"{REPLICA}.c2", "d2", f"{first.epoch}:2", None)
    assert (res.outcome, res.start, res.resumed, res.more) == ("ok", 2, True, False)
    assert [e.seq for e in res.events] == [3, 4, 5]
    assert res.events[0].data == {"title": "e2", "when": "2024-01-02-abc"}  # no date guessing
    for since, reason in ((f"{first.epoch}:9", "ahead_of_log"), ("otherepoch:1", "epoch_mismatch")):
        bad = await port.attach(u, f"{REPLICA}.c3", "d3", since, None)
        assert (bad.outcome, bad.reason, bad.start) == ("resync", reason, 5)


async def test_read_pages_ack_trims_and_filters_apply(port: SessionsPort) -> None:
    u = user()
    att = await port.attach(u, f"{REPLICA}.c1", "d1", None, None)
    await port.deliver(u, [ev(f"e{i}") for i in range(6)], None)
    page = await port.read(u, att.epoch, 2, limit=3)
    assert (page.resync, [e.seq for e in page.events]) == (False, [3, 4, 5])
    assert (await port.read(u, "otherepoch", 0)).resync is True
    acked = await port.ack(u, "d1", 4)
    assert (acked.tail, acked.head) == (5, 6)
    stored = await port.set_filters(u, Filters(types=frozenset({"task_deleted"})))
    assert stored.types == frozenset({"task_deleted"})
    res = await port.deliver(u, [ev("x"), ev("y", "task_deleted")], None)
    assert [(r.status, r.seq) for r in res.results] == [("filtered", 0), ("appended", 7)]


async def test_detach_and_dead_replicas_leave_the_routes(port: SessionsPort) -> None:
    u = user()
    await port.attach(u, f"{REPLICA}.c1", "d1", None, None)
    await port.attach(u, f"{REPLICA}.c2", "d2", None, None)
    await port.detach(u, [f"{REPLICA}.c1"])
    res = await port.deliver(u, [ev("a")], None)
    assert res.routes == {REPLICA: [f"{REPLICA}.c2"]}
    # A snapshot taken long after the attach, without this replica: its routes are gone.
    gone = await port.deliver(u, [ev("b")], Liveness(frozenset({"other"}), 4e9))
    assert gone.routes == {} and gone.results[0].seq == 2


async def test_registry(port: SessionsPort) -> None:
    view = await port.heartbeat(15.0, "http://127.0.0.1:1")
    assert REPLICA in view.live.replicas and view.urls[REPLICA] == "http://127.0.0.1:1"
    await port.leave_registry()
    assert REPLICA not in (await port.registry_snapshot()).live.replicas


def vev(eid: str, version: int, type_: str = "task_updated", task: str = "t1") -> IncomingEvent:
    return IncomingEvent(eid, type_, {"title": eid}, task, None, version)


async def test_per_task_order_by_version(port: SessionsPort) -> None:
    u = user()
    await port.attach(u, f"{REPLICA}.c1", "d1", None, None)
    # v3 ahead of v2 in one batch: held, then recorded in the same turn after v2.
    a = await port.deliver(u, [vev("a", 1, "task_created"), vev("c", 3), vev("b", 2)], None)
    assert [(r.status, r.seq) for r in a.results] == [
        ("appended", 1), ("appended", 3), ("appended", 2)]
    assert (a.released, a.release_in) == ([], 0.0)
    # Dedup first: a redelivery is a duplicate; the same old version under a new id is stale;
    # v5 (v4 missing) is held: kept by the actor, which says when its hold ends.
    again = await port.deliver(u, [vev("b", 2), vev("b-old", 2), vev("e", 5)], None)
    assert [(r.status, r.seq, r.newest) for r in again.results] == [
        ("duplicate", 2, 0), ("stale", 0, 3), ("held", 0, 3)]
    assert again.released == [] and 0 < again.release_in <= HOLD_S
    # The turn that fills the gap releases it, after its own event.
    fill = await port.deliver(u, [vev("d", 4)], None)
    assert [(r.status, r.seq) for r in fill.results] == [("appended", 4)]
    assert [(e.id, e.seq, e.data) for e in fill.released] == [("e", 5, {"title": "e"})]
    assert fill.release_in == 0.0
    # v7 without v6: a release turn (no events) records nothing before the hold is over, and v7
    # after it although v6 never came; v6 is stale then.
    held = await port.deliver(u, [vev("g", 7)], None)
    assert [(r.status, r.newest) for r in held.results] == [("held", 5)]
    early = await port.deliver(u, [], None)
    assert (early.results, early.released) == ([], []) and 0 < early.release_in <= HOLD_S
    await asyncio.sleep(HOLD_S + 0.1)
    late = await port.deliver(u, [], None)
    assert [(e.id, e.seq) for e in late.released] == [("g", 6)] and late.release_in == 0.0
    assert (await port.deliver(u, [], None)).released == []  # released once
    six = await port.deliver(u, [vev("f", 6)], None)
    assert [(r.status, r.seq, r.newest) for r in six.results] == [("stale", 0, 7)]
    # A delete is final: a later update of the task is stale; a higher create re-creates it.
    gone = await port.deliver(u, [vev("x", 8, "task_deleted"), vev("y", 9), vev("z", 9),
                                  vev("w", 9, "task_created")], None)
    assert [(r.status, r.seq, r.newest) for r in gone.results] == [
        ("appended", 7, 0), ("stale", 0, 8), ("stale", 0, 8), ("appended", 8, 0)]
    # Unversioned events of the same task are not ordered.
    plain = await port.deliver(u, [IncomingEvent("p", "task_updated", {}, "t1", None)], None)
    assert [(r.status, r.seq) for r in plain.results] == [("appended", 9)]
