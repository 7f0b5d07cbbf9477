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
    DeliverResult,
    Filters,
    IncomingEvent,
    Limits,
    SessionMeta,
    deliver,
    new_session,
    release,
    set_filters,
)

T0 = 5000.0
HOLD = 0.5
LIM = Limits(max_events=1000, max_tasks=4, max_held=3, hold_s=HOLD)


def admit(state: to.OrderState, eid: str, version: int, type_: str = "task_updated",
          task: str = "t1", now: float = T0) -> to.Verdict:
    return to.admit(state, eid, type_, task, version, now, hold_s=HOLD, max_tasks=4,
                    event={"id": eid, "v": version})


def release_all(state: to.OrderState, now: float, max_held: int = 3) -> list[tuple[str, str, int]]:
    """Every due held event: (event id, verdict, version), in release order."""
    out = []
    while (due := to.release_next(state, now, hold_s=HOLD, max_tasks=4,
                                  max_held=max_held)) is not None:
        eid, held, verdict = due
        assert held.event == {"id": eid, "v": held.version}  # the event comes back whole
        out.append((eid, verdict.status, held.version))
    return out


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
        pytest.param(GONE, "task_updated", 7, "stale", 4, id="later-update-gap-after-delete"),
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
    if status == "held":
        assert state.held["x"] == to.Held("t1", type_, version, T0, {"id": "x", "v": version})
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
    assert list(state.held) == ["v3"] and state.held["v3"].first == T0  # first seen is kept
    assert release_all(state, T0 + 0.1) == []
    assert admit(state, "v2", 2, now=T0 + 0.2).status == "new"
    assert release_all(state, T0 + 0.2) == [("v3", "new", 3)]
    assert state.held == {} and state.tasks["t1"].version == 3


def test_hold_expires_then_the_missing_version_is_stale() -> None:
    state = state_after(("task_created", 1))
    assert admit(state, "v3", 3).status == "held"
    assert release_all(state, T0 + HOLD - 0.01) == []
    assert to.next_due(state, T0 + HOLD - 0.01, HOLD) == pytest.approx(0.01)
    assert release_all(state, T0 + HOLD) == [("v3", "new", 3)]  # expired: recorded anyway
    assert to.next_due(state, T0 + HOLD, HOLD) == 0.0
    v = admit(state, "v2", 2, now=T0 + HOLD + 1)
    assert (v.status, v.newest, state.stale) == ("stale", 3, 1)


def test_an_expired_hold_releases_the_lower_held_versions_first() -> None:
    """v5 waits since T0, v3 since T0+0.3: when v5's hold ends, v3 goes first (the gap before it
    is given up with v5's) instead of being made stale by v5; v4 stays missing."""
    state = state_after(("task_created", 1))
    admit(state, "v5", 5)
    admit(state, "v3", 3, now=T0 + 0.3)
    admit(state, "v9", 9, now=T0 + 0.4)
    assert release_all(state, T0 + HOLD) == [("v3", "new", 3), ("v5", "new", 5)]
    assert list(state.held) == ["v9"]  # its own hold is not over
    assert to.next_due(state, T0 + HOLD, HOLD) == pytest.approx(0.4)


def test_filling_the_gap_releases_a_run_in_version_order() -> None:
    state = state_after(("task_created", 1))
    for v in (4, 6, 3, 5):
        admit(state, f"v{v}", v)
    admit(state, "other", 3, task="t2")
    assert admit(state, "v2", 2).status == "new"
    assert release_all(state, T0) == [("v3", "new", 3), ("v4", "new", 4), ("v5", "new", 5),
                                  ("v6", "new", 6)]
    assert list(state.held) == ["other"]


def test_a_held_event_superseded_meanwhile_is_released_stale() -> None:
    state = state_after(("task_created", 1))
    admit(state, "v3", 3)
    admit(state, "v3-again", 3)  # another event id, same version
    admit(state, "v2", 2)
    assert release_all(state, T0) == [("v3", "new", 3), ("v3-again", "stale", 3)]
    assert state.stale == 1
    admit(state, "upd5", 5)
    assert admit(state, "del4", 4, "task_deleted").status == "new"
    assert release_all(state, T0) == [("upd5", "stale", 5)]  # a delete is final


def test_zero_hold_never_waits() -> None:
    state = to.OrderState()
    v = to.admit(state, "e", "task_updated", "t1", 9, T0, hold_s=0.0, max_tasks=4)
    assert v.status == "new" and state.held == {}


def test_a_clock_that_went_back_does_not_stretch_the_hold_without_bound() -> None:
    state = state_after(("task_created", 1))
    admit(state, "v3", 3, now=T0)
    assert release_all(state, T0 - HOLD / 2) == []  # a small step back: at most one more hold
    assert to.next_due(state, T0 - HOLD / 2, HOLD) == HOLD
    assert release_all(state, T0 - 100) == [("v3", "new", 3)]


def test_held_events_are_bounded_the_oldest_released_at_once() -> None:
    state = state_after(("task_created", 1))
    for i in range(5):
        assert admit(state, f"h{i}", 3 + i, task=f"x{i}", now=T0 + i * 0.01).status == "held"
    assert len(state.held) == 5  # admit keeps them; release enforces the bound
    assert release_all(state, T0 + 0.05) == [("h0", "new", 3), ("h1", "new", 4)]
    assert list(state.held) == ["h2", "h3", "h4"]


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
    held = json.loads(json.dumps(state.held_to_wire()))
    rebuilt = to.OrderState.from_wire(state.meta_to_wire(), rows, held)
    assert rebuilt == state and list(rebuilt.tasks) == list(state.tasks)
    assert state.meta_to_wire()["buckets"] == sorted({to.bucket_of(t) for t in state.tasks})
    assert state.meta_to_wire()["held"] == 1 and list(state.held) == ["t3-9"]


def test_the_meta_of_the_redelivery_hold_is_still_read() -> None:
    """Before the hold moved into the actor the meta kept held ids with their first-seen time;
    the broker kept the events, so there is nothing to restore."""
    state = to.OrderState.from_wire({"stale": 2, "tick": 0, "held": [["e", 1.5]]})
    assert state == to.OrderState(stale=2)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param({"tasks": [["t", 0, False, 1]], "tick": 1}, id="version-0"),
        pytest.param({"tasks": [["t", 1, "no", 1]], "tick": 1}, id="deleted-not-bool"),
        pytest.param({"tasks": [["t", 1, False, 5]], "tick": 1}, id="tick-above-session"),
        pytest.param({"tasks": [["t", 1, False, 1], ["t", 2, False, 2]], "tick": 2},
                     id="task-twice"),
        pytest.param({"tasks": [["t", 1, False]], "tick": 1}, id="short-row"),
        pytest.param({"held": -1}, id="held-count-negative"),
        pytest.param({"held_events": [["e", "t", "task_updated", 2, 1.0]]}, id="held-shape"),
        pytest.param({"held_events": [["e", "t", "task_updated", 2, "now", {}]]},
                     id="held-time-not-number"),
        pytest.param({"held_events": [["e", "t", "task_updated", 0, 1.0, {}]]},
                     id="held-version-0"),
        pytest.param({"held_events": [["e", "t", "task_updated", 2, 1.0, []]]},
                     id="held-event-not-object"),
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


def test_a_held_event_is_kept_and_released_when_its_gap_fills() -> None:
    meta = new_session("ep")
    assert deliver(meta, vev("a", 1, "task_created"), T0, LIM).status == "appended"
    res = deliver(meta, vev("c", 3), T0, LIM)
    assert (res.status, res.seq, res.newest, res.released) == ("held", 0, 1, ())
    assert meta.order.held["c"].event == vev("c", 3).to_wire()
    again = deliver(meta, vev("c", 3), T0 + 0.1, LIM)  # redelivered: still held, not twice
    assert again.status == "held" and meta.order.held["c"].first == T0
    res = deliver(meta, vev("b", 2), T0 + 0.2, LIM)
    assert (res.status, res.seq) == ("appended", 2)
    [(eid, rel)] = res.released
    assert (eid, rel.status, rel.seq) == ("c", "appended", 3)
    assert rel.record is not None and rel.record.data == {"v": 3} and rel.record.ts == T0 + 0.2
    assert meta.order.held == {} and [s for _, s in meta.seen] == [1, 2, 3]
    assert deliver(meta, vev("c", 3), T0, LIM).status == "duplicate"


def test_release_records_expired_holds_through_the_filters() -> None:
    meta = new_session("ep")
    deliver(meta, vev("c", 3), T0, LIM)
    deliver(meta, vev("x", 2, task="t2"), T0 + 0.2, LIM)
    set_filters(meta, Filters(task_ids=frozenset({"t2"})))
    assert release(meta, T0 + HOLD - 0.01, LIM) == []
    got = release(meta, T0 + HOLD, LIM)
    assert [(eid, r.status, r.seq) for eid, r in got] == [("c", "filtered", 0)]
    assert meta.order.tasks["t1"].version == 3  # a filtered event still counts as recorded
    got = release(meta, T0 + 0.2 + HOLD, LIM)
    assert [(eid, r.status, r.seq) for eid, r in got] == [("x", "appended", 1)]


def test_beyond_max_held_the_oldest_is_released_at_once() -> None:
    meta = new_session("ep")
    for i in range(LIM.max_held):
        assert deliver(meta, vev(f"h{i}", 5, task=f"x{i}"), T0, LIM).status == "held"
    res = deliver(meta, vev("h9", 5, task="x9"), T0, LIM)
    assert res.status == "held"
    assert [(eid, r.status, r.seq) for eid, r in res.released] == [("h0", "appended", 1)]
    assert len(meta.order.held) == LIM.max_held


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

P_LIM = Limits(max_events=1000, max_tasks=16, max_held=64, hold_s=HOLD)
TASKS = ("t1", "t2")


@settings(max_examples=150, deadline=None, database=None)
@given(st.permutations([(t, v) for t in TASKS for v in range(1, 9)]),
       st.lists(st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.6]), min_size=16, max_size=16),
       st.booleans())
def test_any_arrival_order_records_increasing_versions(
        order: list[tuple[str, int]], waits: list[float], within: bool) -> None:
    """Versions 1..8 of two tasks arrive in any order, each once (the gateway acknowledges a held
    event); after an answer that still holds events, the gateway's timer sends a release turn
    ``next_due`` later unless another event comes first. Arrivals within one hold window: nothing
    stale, every version recorded in order. Any arrivals: versions strictly increasing, every
    version appended or counted stale, nothing left held, and a version is stale only when it
    came more than a hold after a higher version of its task (that hold was over)."""
    if within:
        waits = [w / 100 for w in waits]  # the whole burst inside 0.1 s < HOLD
    meta = new_session("ep")
    now, timer = T0, None
    arrived: dict[tuple[str, int], float] = {}
    fate: dict[tuple[str, int], str] = {}
    seqs: list[int] = []

    def settle(eid: str, res: DeliverResult) -> None:
        if res.status != "held":
            fate[(eid[:2], int(eid[3:]))] = res.status
        if res.status == "appended":
            seqs.append(res.seq)

    def arm() -> float | None:
        due = to.next_due(meta.order, now, HOLD)
        return now + due if due else None

    for (task, v), wait in zip(order, waits, strict=True):
        while timer is not None and timer <= now + wait:  # the release timer fires first
            now = timer
            for eid, r in release(meta, now, P_LIM):
                settle(eid, r)
            timer = arm()
        now += wait
        arrived[(task, v)] = now
        res = deliver(meta, vev(f"{task}v{v}", v, "task_deleted" if v == 8 else "task_updated",
                                task), now, P_LIM)
        settle(f"{task}v{v}", res)
        for eid, r in res.released:
            settle(eid, r)
        timer = arm()
    while timer is not None:
        now = timer
        for eid, r in release(meta, now, P_LIM):
            settle(eid, r)
        timer = arm()

    assert meta.order.held == {} and sorted(fate) == sorted(order)
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free, in the order recorded
    logged = [(eid[:2], int(eid[3:])) for eid, seq in meta.seen if seq > 0]
    for task in TASKS:
        versions = [v for t, v in logged if t == task]
        assert versions == sorted(set(versions)) and versions[-1] == 8
    assert {tv for tv, f in fate.items() if f == "appended"} == set(logged)
    stale = [tv for tv, f in fate.items() if f == "stale"]
    assert meta.order.stale == len(stale)
    for task, v in stale:
        assert any(arrived[(task, w)] + HOLD <= arrived[(task, v)] for w in range(v + 1, 9))
    if within:
        assert stale == []
        for task in TASKS:
            assert [v for t, v in logged if t == task] == list(range(1, 9))
    SessionMeta.from_wire(json.loads(json.dumps(meta.to_wire()))).check()
