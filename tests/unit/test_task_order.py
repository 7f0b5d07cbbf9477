"""The pure per-task order rules (actors/task_order.py) and how session_core.deliver applies them:
stale / held / new by the producer's version, a delete is final, bounded maps, wire round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import task_order as to
from actors.session_core import (
    Filters,
    IncomingEvent,
    Limits,
    SessionMeta,
    deliver,
    new_session,
    set_filters,
)

T0 = 5000.0
HOLD = 0.5
LIM = Limits(max_events=1000, max_tasks=4, max_held=3, hold_s=HOLD)


def admit(state: to.OrderState, eid: str, version: int, type_: str = "task_updated",
          task: str = "t1", now: float = T0) -> to.Verdict:
    return to.admit(state, eid, type_, task, version, now, hold_s=HOLD, max_tasks=4, max_held=3)


def state_after(*steps: tuple[str, int]) -> to.OrderState:
    """A state in which (type, version) of task t1 were recorded in this order."""
    st_ = to.OrderState()
    for i, (type_, version) in enumerate(steps):
        assert admit(st_, f"setup{i}", version, type_).status == "new"
    return st_


NEW = [("task_created", 1), ("task_updated", 2), ("task_updated", 3)]
GONE = [*NEW, ("task_deleted", 4)]


@pytest.mark.parametrize(
    ("history", "type_", "version", "status", "newest"),
    [
        pytest.param([], "task_created", 1, "new", 0, id="first-version-1"),
        pytest.param([], "task_updated", 1, "new", 0, id="first-update-version-1"),
        pytest.param([], "task_updated", 2, "held", 0, id="update-before-its-create"),
        pytest.param(NEW, "task_updated", 4, "new", 3, id="next-version"),
        pytest.param(NEW, "task_updated", 3, "stale", 3, id="equal-version"),
        pytest.param(NEW, "task_updated", 2, "stale", 3, id="older-title-after-newer"),
        pytest.param(NEW, "task_created", 1, "stale", 3, id="create-after-update"),
        pytest.param(NEW, "task_updated", 5, "held", 3, id="gap"),
        pytest.param(NEW, "task_deleted", 9, "held", 3, id="delete-with-gap"),
        pytest.param(GONE, "task_updated", 2, "stale", 4, id="older-update-after-delete"),
        pytest.param(GONE, "task_updated", 5, "stale", 4, id="later-update-after-delete"),
        pytest.param(GONE, "task_completed", 5, "stale", 4, id="later-complete-after-delete"),
        pytest.param(GONE, "task_deleted", 5, "stale", 4, id="second-delete"),
        pytest.param(GONE, "task_created", 4, "stale", 4, id="create-not-newer-than-delete"),
        pytest.param(GONE, "task_created", 5, "new", 4, id="re-create-after-delete"),
        pytest.param(GONE, "task_created", 7, "held", 4, id="re-create-with-gap"),
    ],
)
def test_admit(history: list[tuple[str, int]], type_: str, version: int, status: str,
               newest: int) -> None:
    state = state_after(*history)
    before = state.stale
    v = admit(state, "x", version, type_)
    assert (v.status, v.newest) == (status, newest)
    assert state.stale == before + (status == "stale")
    assert ("x" in state.held) == (status == "held")
    mark = state.tasks["t1"] if history or status == "new" else None
    if status == "new":
        assert mark == to.TaskMark(version, type_ == "task_deleted", state.tick)
        assert v.buckets == {to.bucket_of("t1")}
    else:
        assert v.buckets == frozenset()


def test_held_until_the_gap_fills() -> None:
    state = state_after(("task_created", 1))
    assert admit(state, "v3", 3).status == "held"
    assert admit(state, "v3", 3, now=T0 + 0.1).status == "held"  # redelivered: still waiting
    assert state.held == {"v3": T0}  # first seen is kept, not renewed
    assert admit(state, "v2", 2, now=T0 + 0.2).status == "new"
    assert admit(state, "v3", 3, now=T0 + 0.3).status == "new"
    assert state.held == {} and state.tasks["t1"].version == 3


def test_hold_expires_then_the_missing_version_is_stale() -> None:
    state = state_after(("task_created", 1))
    assert admit(state, "v3", 3).status == "held"
    assert admit(state, "v3", 3, now=T0 + HOLD - 0.01).status == "held"
    assert admit(state, "v3", 3, now=T0 + HOLD).status == "new"  # expired: recorded anyway
    v = admit(state, "v2", 2, now=T0 + HOLD + 1)
    assert (v.status, v.newest, state.stale) == ("stale", 3, 1)


def test_zero_hold_never_waits() -> None:
    state = to.OrderState()
    v = to.admit(state, "e", "task_updated", "t1", 9, T0, hold_s=0.0, max_tasks=4, max_held=3)
    assert v.status == "new" and state.held == {}


def test_clock_going_back_restarts_the_hold() -> None:
    state = state_after(("task_created", 1))
    admit(state, "v3", 3, now=T0)
    assert admit(state, "v3", 3, now=T0 - 100).status == "held"
    assert state.held == {"v3": T0 - 100}  # bounded: it expires HOLD after the new first-seen


def test_held_events_are_bounded_and_forgotten() -> None:
    state = state_after(("task_created", 1))
    for i in range(5):
        assert admit(state, f"h{i}", 3 + i, now=T0 + i * 0.01).status == "held"
    assert list(state.held) == ["h2", "h3", "h4"]  # oldest first seen dropped (max_held=3)
    admit(state, "late", 9, now=T0 + HOLD + to.HELD_FORGET_S + 1)
    assert list(state.held) == ["late"]  # long-expired entries pruned


def test_newest_versions_are_an_lru_bounded_by_count() -> None:
    state = to.OrderState()
    for t in ("a", "b", "c", "d"):
        admit(state, f"{t}1", 1, task=t)
    admit(state, "a2", 2, task="a")  # a is recent again
    v = admit(state, "e1", 1, task="e")
    assert list(state.tasks) == ["c", "d", "a", "e"]  # b evicted (max_tasks=4)
    assert v.buckets == {to.bucket_of("e"), to.bucket_of("b")}
    # Forgotten: its next event counts as the first seen of an unknown task.
    assert admit(state, "b9", 9, task="b").status == "held"


def test_stale_and_held_do_not_touch_recency() -> None:
    state = to.OrderState()
    for t in ("a", "b"):
        admit(state, f"{t}1", 1, task=t)
    admit(state, "a-old", 1, task="a")
    admit(state, "a-gap", 5, task="a")
    assert list(state.tasks) == ["a", "b"]


def _full_state() -> to.OrderState:
    state = to.OrderState()
    for i, t in enumerate(("t1", "t2", "t3", "t4", "t5")):
        admit(state, f"{t}-1", 1, task=t, now=T0 + i)
    admit(state, "t2-2", 2, "task_deleted", task="t2")
    admit(state, "t2-old", 1, task="t2")
    admit(state, "t3-9", 9, task="t3")
    return state


def test_wire_round_trip_and_buckets_rebuild_the_same_lru() -> None:
    state = _full_state()
    assert to.OrderState.from_wire(json.loads(json.dumps(state.to_wire()))) == state
    rows = [r for b in range(to.BUCKETS) for r in state.bucket_rows(b)]
    rebuilt = to.OrderState.from_wire(state.meta_to_wire(), rows)
    assert rebuilt == state and list(rebuilt.tasks) == list(state.tasks)
    assert state.meta_to_wire()["buckets"] == sorted({to.bucket_of(t) for t in state.tasks})


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param({"tasks": [["t", 0, False, 1]], "tick": 1}, id="version-0"),
        pytest.param({"tasks": [["t", 1, "no", 1]], "tick": 1}, id="deleted-not-bool"),
        pytest.param({"tasks": [["t", 1, False, 5]], "tick": 1}, id="tick-above-session"),
        pytest.param({"tasks": [["t", 1, False, 1], ["t", 2, False, 2]], "tick": 2},
                     id="task-twice"),
        pytest.param({"tasks": [["t", 1, False]], "tick": 1}, id="short-row"),
        pytest.param({"held": [["e"]]}, id="held-shape"),
        pytest.param({"held": [["e", "now"]]}, id="held-time-not-number"),
        pytest.param({"stale": -1}, id="negative-stale"),
    ],
)
def test_corrupt_order_state_is_refused(wire: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        to.OrderState.from_wire(wire)


# -- through session_core.deliver ----------------------------------------------------------------


def vev(eid: str, version: int | None, type_: str = "task_updated", task: str | None = "t1"
        ) -> IncomingEvent:
    return IncomingEvent(eid, type_, {"v": version}, task, None, version)


def test_duplicate_comes_before_stale() -> None:
    meta = new_session("ep")
    assert deliver(meta, vev("a", 1, "task_created"), T0, LIM).status == "appended"
    assert deliver(meta, vev("b", 2), T0, LIM).status == "appended"
    res = deliver(meta, vev("a", 1, "task_created"), T0, LIM)
    assert (res.status, res.seq) == ("duplicate", 1)
    res = deliver(meta, vev("a-again", 1, "task_created"), T0, LIM)
    assert (res.status, res.seq, res.newest, res.routes) == ("stale", 0, 2, {})
    assert meta.head == 2 and meta.order.stale == 1
    assert all(eid != "a-again" for eid, _ in meta.seen)


def test_without_version_or_task_there_is_no_ordering() -> None:
    meta = new_session("ep")
    deliver(meta, vev("a", 5), T0, LIM)  # held: unknown task at version 5
    for eid, version, task in (("n1", None, "t1"), ("n2", None, "t1"), ("n3", 3, None)):
        assert deliver(meta, vev(eid, version, task=task), T0, LIM).status == "appended"
    assert meta.order.tasks == {} and meta.order.stale == 0


def test_filtered_event_still_records_its_version() -> None:
    meta = new_session("ep")
    set_filters(meta, Filters(types=frozenset({"task_created"})))
    assert deliver(meta, vev("c", 1, "task_created"), T0, LIM).status == "appended"
    res = deliver(meta, vev("u", 2), T0, LIM)
    assert res.status == "filtered" and res.buckets == {to.bucket_of("t1")}
    # v3 is the next version, not a gap: a user filter never makes events wait.
    assert deliver(meta, vev("u3", 3), T0, LIM).status == "filtered"
    assert meta.order.held == {}


# -- property: any arrival order of a task's versions ---------------------------------------------


@settings(max_examples=150, deadline=None, database=None)
@given(st.permutations(list(range(1, 9))), st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.6]),
                                                    min_size=40, max_size=40))
def test_any_arrival_order_records_increasing_versions(order: list[int],
                                                       waits: list[float]) -> None:
    """Versions 1..8 of one task arrive in any order; a held one is redelivered (as the gateway's
    RETRY makes Dapr do) until recorded. The log holds strictly increasing versions, every version
    is either appended or stale, and nothing is lost."""
    meta = new_session("ep")
    now = T0
    queue = [(v, "task_deleted" if v == 8 else "task_updated") for v in order]
    fate: dict[int, str] = {}
    steps = 0
    while queue:
        v, type_ = queue.pop(0)
        now += waits[steps % len(waits)]
        steps += 1
        res = deliver(meta, vev(f"v{v}", v, type_), now, LIM)
        if res.status == "held":
            assert res.newest < v - 1
            queue.append((v, type_))  # redelivered later
        else:
            fate[v] = res.status
        assert steps < 200, "a held event never got through"
    appended = [meta_v for meta_v in _logged_versions(meta)]
    assert appended == sorted(set(appended)) and appended
    assert sorted(fate) == list(range(1, 9))
    assert {v for v, f in fate.items() if f == "appended"} == set(appended)
    assert meta.order.stale == sum(f == "stale" for f in fate.values())
    assert appended[-1] == 8 and meta.order.held == {}
    SessionMeta.from_wire(json.loads(json.dumps(meta.to_wire()))).check()


def _logged_versions(meta: SessionMeta) -> list[int]:
    # The property test keeps no records; the seen list holds (event id, seq) in append order.
    return [int(eid[1:]) for eid, seq in meta.seen if seq > 0]
