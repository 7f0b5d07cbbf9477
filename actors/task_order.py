"""Per-task order: the pure rules that record the events of one task in the producer's version
order, although competing consumers deliver them reordered. No I/O, no clock (``now`` is passed).

Every versioned event (producer-supplied ``version``: an int >= 1, incremented on every change of
the task) is judged against the newest version already recorded for its task:

- ``new``: record it (the caller appends it, or filters it: a filtered event still counts as
  recorded, so a user filter never opens a gap). Either the next version (``newest + 1``), a
  first-ever ``version 1``, or a gap whose hold has expired.
- ``stale``: ``version <= newest``, or any event but a higher ``task_created`` after a
  ``task_deleted``. Never appended, never routed: the later version already recorded superseded
  it. Counted in ``OrderState.stale``.
- ``held``: a gap (``version > newest + 1``; an unknown task counts as ``newest = 0``). Not
  appended; the event id and the time it was first seen are remembered (bounded). The caller
  asks for a redelivery; once the missing version was recorded, or ``hold_s`` has passed since
  first seen, the same event is ``new``.

The newest version per task is an LRU map bounded by ``max_tasks``; it is persisted in
``BUCKETS`` small keys (a task's bucket is fixed by a CRC of its id), so a turn rewrites only the
bucket it touched. Order inside the map is by ``tick`` (a per-session counter bumped on every
record), so a map rebuilt from its buckets evicts exactly like the one in memory.

Mutation contract: ``admit`` changes ``state`` in place and names the buckets it changed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = ["BUCKETS", "OrderState", "TaskMark", "Verdict", "admit", "bucket_of"]

BUCKETS = 16
# A held entry whose event never came back (its publisher's retries ran out, or it went to the
# dead-letter topic) is forgotten this long after its hold expired; a late return is held again.
HELD_FORGET_S = 60.0

Status: TypeAlias = Literal["new", "stale", "held"]


def _int(v: Any, what: str, low: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{what}: expected int >= {low}, got {v!r}")
    return v


def _list(v: Any, what: str) -> list[Any]:
    if not isinstance(v, list | tuple):
        raise ValueError(f"{what}: expected list, got {type(v).__name__}")
    return list(v)


def bucket_of(task_id: str) -> int:
    """Stable across processes and restarts (unlike ``hash``)."""
    return zlib.crc32(task_id.encode("utf-8", "surrogatepass")) % BUCKETS


@dataclass(frozen=True)
class TaskMark:
    version: int  # newest recorded version of the task
    deleted: bool  # that version was a task_deleted
    tick: int  # recency: larger = recorded later


@dataclass
class OrderState:
    tasks: dict[str, TaskMark] = field(default_factory=dict)  # least recently recorded first
    held: dict[str, float] = field(default_factory=dict)  # event id -> first seen, oldest first
    stale: int = 0  # stale events answered since the session started (redeliveries included)
    tick: int = 0  # last tick handed out

    def check(self) -> None:
        ticks = [m.tick for m in self.tasks.values()]
        if ticks != sorted(ticks) or len(set(ticks)) != len(ticks):
            raise ValueError("task marks out of tick order")
        if ticks and ticks[-1] > self.tick:
            raise ValueError(f"task tick {ticks[-1]} above the session tick {self.tick}")

    def bucket_rows(self, bucket: int) -> list[list[Any]]:
        """The stored value of one bucket key: ``[task, version, deleted, tick]`` rows."""
        return [[t, m.version, m.deleted, m.tick] for t, m in self.tasks.items()
                if bucket_of(t) == bucket]

    def used_buckets(self) -> list[int]:
        return sorted({bucket_of(t) for t in self.tasks})

    def meta_to_wire(self) -> dict[str, Any]:
        """The small part kept in the session meta (the tasks live in their buckets)."""
        return {"stale": self.stale, "tick": self.tick, "buckets": self.used_buckets(),
                "held": [[eid, t] for eid, t in self.held.items()]}

    def to_wire(self) -> dict[str, Any]:
        """Everything in one value (``inspect``, wire round trips)."""
        rows = [[t, m.version, m.deleted, m.tick] for t, m in self.tasks.items()]
        return {**self.meta_to_wire(), "tasks": rows}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], rows: Iterable[Any] | None = None) -> OrderState:
        """Parse the meta part plus task rows (``d["tasks"]`` unless ``rows`` is given)."""
        held: dict[str, float] = {}
        for item in _list(d.get("held", []), "held"):
            eid, first = _list(item, "held item")
            if not isinstance(eid, str) or isinstance(first, bool) or not isinstance(
                    first, int | float):
                raise ValueError("held item: expected [event_id, first_seen]")
            held[eid] = float(first)
        marks: list[tuple[str, TaskMark]] = []
        for row in _list(d.get("tasks", []) if rows is None else rows, "tasks"):
            task, version, deleted, tick = _list(row, "task row")
            if not isinstance(task, str) or not isinstance(deleted, bool):
                raise ValueError("task row: expected [task, version, deleted, tick]")
            marks.append((task, TaskMark(_int(version, "version", 1), deleted,
                                         _int(tick, "tick", 1))))
        marks.sort(key=lambda tm: tm[1].tick)
        state = cls(dict(marks), held, _int(d.get("stale", 0), "stale"),
                    _int(d.get("tick", 0), "tick"))
        if len(state.tasks) != len(marks):
            raise ValueError("task listed twice")
        state.check()
        return state


@dataclass(frozen=True)
class Verdict:
    status: Status
    newest: int  # newest recorded version of the task before this event (0: none known)
    buckets: frozenset[int] = frozenset()  # bucket keys this call changed


def _record(state: OrderState, task_id: str, version: int, deleted: bool,
            max_tasks: int) -> frozenset[int]:
    state.tick += 1
    state.tasks.pop(task_id, None)  # re-insert at the recent end
    state.tasks[task_id] = TaskMark(version, deleted, state.tick)
    touched = {bucket_of(task_id)}
    while len(state.tasks) > max_tasks:
        evicted = next(iter(state.tasks))  # least recently recorded
        del state.tasks[evicted]
        touched.add(bucket_of(evicted))
    return frozenset(touched)


def _hold(state: OrderState, event_id: str, now: float, hold_s: float, max_held: int) -> bool:
    """True while the event must still wait; remembers when it was first seen."""
    first = state.held.get(event_id)
    if first is None or first > now:  # new, or the clock went back: the hold starts now
        for eid in [e for e, t in state.held.items() if t + hold_s + HELD_FORGET_S < now]:
            del state.held[eid]
        state.held.pop(event_id, None)
        state.held[event_id] = first = now
        while len(state.held) > max_held:
            del state.held[next(iter(state.held))]
    return now - first < hold_s


def admit(
    state: OrderState,
    event_id: str,
    event_type: str,
    task_id: str,
    version: int,
    now: float,
    *,
    hold_s: float,
    max_tasks: int,
    max_held: int,
) -> Verdict:
    """Judge one versioned event (mutates ``state``); see the module docstring."""
    mark = state.tasks.get(task_id)
    newest = mark.version if mark is not None else 0
    if mark is not None and (version <= newest or (mark.deleted and event_type != "task_created")):
        # A delete is final: only a task_created with a higher version re-creates the task.
        state.held.pop(event_id, None)
        state.stale += 1
        return Verdict("stale", newest)
    if version > newest + 1 and _hold(state, event_id, now, hold_s, max_held):
        return Verdict("held", newest)
    state.held.pop(event_id, None)
    touched = _record(state, task_id, version, event_type == "task_deleted", max_tasks)
    return Verdict("new", newest, touched)
