"""Per-task order: the pure rules that record the events of one task in the producer's version
order, although competing consumers deliver them reordered. No I/O, no clock (``now`` is passed).

Every versioned event (producer-supplied ``version``: an int >= 1, incremented on every change of
the task) is judged against the newest version already recorded for its task:

- ``new``: record it (the caller appends it, or filters it: a filtered event still counts as
  recorded, so a user filter never opens a gap). Either the next version (``newest + 1``) or a
  first-ever ``version 1``.
- ``stale``: ``version <= newest``, or any event but a higher ``task_created`` after a
  ``task_deleted``. Never appended, never routed: the later version already recorded superseded
  it. Counted in ``OrderState.stale``.
- ``held``: a gap (``version > newest + 1``; an unknown task counts as ``newest = 0``). The event
  itself is kept in ``OrderState.held`` (its wire form, opaque here) with the time it was first
  seen; the caller acknowledges the message. ``release_next`` hands it back once it is due.

Release (``release_next``, called by the caller at the start of every turn and after every event):
a task's lowest held version is due when it is the next version (the gap filled), when it has
become stale, or when it or a higher held version of the same task has waited ``hold_s`` (then the
gap is given up: the lower held versions go first, in version order, so none of them is made
stale by a higher one). Beyond ``max_held`` held events the oldest is due at once (same rule). A
due event is recorded as ``new`` whatever the gap, or judged ``stale``.

The newest version per task is an LRU map bounded by ``max_tasks``; it is persisted in
``BUCKETS`` small keys (a task's bucket is fixed by a CRC of its id), so a turn rewrites only the
bucket it touched. Order inside the map is by ``tick`` (a per-session counter bumped on every
record), so a map rebuilt from its buckets evicts exactly like the one in memory. Held events are
persisted in their own key (``held_to_wire``), written only by the turns that change them.

Mutation contract: ``admit`` and ``release_next`` change ``state`` in place and name the buckets
they changed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, TypedDict

from vocab.json_types import JsonObject, WireMap

__all__ = ["BUCKETS", "Held", "OrderState", "TaskMark", "Verdict", "admit", "bucket_of",
           "next_due", "release_next"]

BUCKETS = 16

Status: TypeAlias = Literal["new", "stale", "held"]
TaskRow: TypeAlias = list[str | int | bool]
"""A stored task mark: ``[task, version, deleted, tick]``."""
HeldRow: TypeAlias = list[str | int | float | JsonObject]
"""A stored held event: ``[id, task, type, version, first, event]``."""


class OrderMetaWire(TypedDict):
    stale: int
    tick: int
    buckets: list[int]
    held: int


class OrderWire(OrderMetaWire):
    tasks: list[TaskRow]
    held_events: list[HeldRow]


def _int(v: object, what: str, low: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{what}: expected int >= {low}, got {v!r}")
    return v


def _num(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{what}: expected a number, got {v!r}")
    return float(v)


def _list(v: object, what: str) -> list[object]:
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


@dataclass(frozen=True)
class Held:
    """An event waiting for a missing earlier version of its task."""

    task_id: str
    type: str
    version: int
    first: float  # when it was first seen: the hold ends hold_s later
    event: JsonObject  # the caller's wire form of the event, handed back on release

    def to_wire(self, event_id: str) -> HeldRow:
        return [event_id, self.task_id, self.type, self.version, self.first, self.event]

    @staticmethod
    def from_wire(row: object) -> tuple[str, Held]:
        parts = _list(row, "held row")
        if len(parts) != 6:
            raise ValueError("held row: expected [id, task, type, version, first, event]")
        eid, task, type_, version, first, event = parts
        if not (isinstance(eid, str) and isinstance(task, str) and isinstance(type_, str)
                and isinstance(event, Mapping)):
            raise ValueError("held row: expected [id, task, type, version, first, event]")
        return eid, Held(task, type_, _int(version, "held version", 1), _num(first, "held first"),
                         dict(event))


@dataclass
class OrderState:
    tasks: dict[str, TaskMark] = field(default_factory=dict)  # least recently recorded first
    held: dict[str, Held] = field(default_factory=dict)  # event id -> held event, oldest first
    stale: int = 0  # stale events answered since the session started
    tick: int = 0  # last tick handed out

    def check(self) -> None:
        ticks = [m.tick for m in self.tasks.values()]
        if ticks != sorted(ticks) or len(set(ticks)) != len(ticks):
            raise ValueError("task marks out of tick order")
        if ticks and ticks[-1] > self.tick:
            raise ValueError(f"task tick {ticks[-1]} above the session tick {self.tick}")

    def bucket_rows(self, bucket: int) -> list[TaskRow]:
        """The stored value of one bucket key: ``[task, version, deleted, tick]`` rows."""
        return [[t, m.version, m.deleted, m.tick] for t, m in self.tasks.items()
                if bucket_of(t) == bucket]

    def used_buckets(self) -> list[int]:
        return sorted({bucket_of(t) for t in self.tasks})

    def held_to_wire(self) -> list[HeldRow]:
        """The stored value of the held key, oldest first."""
        return [h.to_wire(eid) for eid, h in self.held.items()]

    def meta_to_wire(self) -> OrderMetaWire:
        """The small part kept in the session meta (tasks and held events have their own keys;
        ``held`` is their count, so a rebuild reads the held key only when there are some)."""
        return {"stale": self.stale, "tick": self.tick, "buckets": self.used_buckets(),
                "held": len(self.held)}

    def to_wire(self) -> OrderWire:
        """Everything in one value (``inspect``, wire round trips)."""
        rows: list[TaskRow] = [[t, m.version, m.deleted, m.tick] for t, m in self.tasks.items()]
        return {**self.meta_to_wire(), "tasks": rows, "held_events": self.held_to_wire()}

    @classmethod
    def from_wire(cls, d: WireMap, rows: Iterable[object] | None = None,
                  held_rows: Iterable[object] | None = None) -> OrderState:
        """Parse the meta part plus task rows (``d["tasks"]`` unless ``rows`` is given) and held
        rows (``d["held_events"]`` unless ``held_rows`` is given)."""
        count = d.get("held", 0)
        # A list is the meta of the redelivery-based hold (event ids only; the broker kept the
        # events): nothing to restore.
        if not isinstance(count, list | tuple):
            _int(count, "held")
        held: dict[str, Held] = {}
        for row in _list(d.get("held_events", []) if held_rows is None else held_rows, "held"):
            eid, h = Held.from_wire(row)
            held[eid] = h
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


def _superseded(mark: TaskMark | None, event_type: str, version: int) -> bool:
    # A delete is final: only a task_created with a higher version re-creates the task.
    return mark is not None and (
        version <= mark.version or (mark.deleted and event_type != "task_created"))


def _judge(state: OrderState, event_type: str, task_id: str, version: int,
           max_tasks: int) -> Verdict:
    """Stale, else recorded whatever the gap."""
    mark = state.tasks.get(task_id)
    newest = mark.version if mark is not None else 0
    if _superseded(mark, event_type, version):
        state.stale += 1
        return Verdict("stale", newest)
    touched = _record(state, task_id, version, event_type == "task_deleted", max_tasks)
    return Verdict("new", newest, touched)


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
    event: WireMap | None = None,
) -> Verdict:
    """Judge one arriving versioned event (mutates ``state``); see the module docstring. A held
    event is kept with ``event`` (its wire form); an id already held stays held as it was."""
    mark = state.tasks.get(task_id)
    newest = mark.version if mark is not None else 0
    if event_id in state.held:
        return Verdict("held", newest)
    if not _superseded(mark, event_type, version) and version > newest + 1 and hold_s > 0:
        state.held[event_id] = Held(task_id, event_type, version, now, dict(event or {}))
        return Verdict("held", newest)
    return _judge(state, event_type, task_id, version, max_tasks)


def _expired(h: Held, now: float, hold_s: float) -> bool:
    # A clock that went back more than a hold must not stretch it without bound.
    return now - h.first >= hold_s or h.first - now > hold_s


def release_next(
    state: OrderState, now: float, *, hold_s: float, max_tasks: int, max_held: int
) -> tuple[str, Held, Verdict] | None:
    """Take the next due held event out of ``state`` and judge it (``new``: recorded; or
    ``stale``); None when nothing is due. Call until None. Oldest first seen first."""
    if not state.held:
        return None
    over = len(state.held) - max_held
    cut: dict[str, int] = {}  # task -> highest held version whose hold is over (or forced out)
    lowest: dict[str, tuple[str, int]] = {}  # task -> (event id, version) of its lowest held
    for i, (eid, h) in enumerate(state.held.items()):
        if i < over or _expired(h, now, hold_s):
            cut[h.task_id] = max(cut.get(h.task_id, 0), h.version)
        low = lowest.get(h.task_id)
        if low is None or h.version < low[1]:
            lowest[h.task_id] = (eid, h.version)
    for eid, h in state.held.items():
        if lowest[h.task_id][0] != eid:
            continue
        mark = state.tasks.get(h.task_id)
        newest = mark.version if mark is not None else 0
        if (h.version <= newest + 1 or h.version <= cut.get(h.task_id, 0)
                or _superseded(mark, h.type, h.version)):
            del state.held[eid]
            return eid, h, _judge(state, h.type, h.task_id, h.version, max_tasks)
    return None


def next_due(state: OrderState, now: float, hold_s: float) -> float:
    """Seconds until the earliest hold ends (at most ``hold_s``; a tiny positive number when one
    is due now); 0.0 when nothing is held."""
    if not state.held:
        return 0.0
    wait = min(h.first + hold_s - now for h in state.held.values())
    return min(max(wait, 0.001), hold_s) if hold_s > 0 else 0.001
