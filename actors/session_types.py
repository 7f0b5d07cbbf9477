"""The value types of a user's session (limits, events, cursors, connections, liveness, meta)
with their validated wire forms. Rules over them live in actors/session_core.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NotRequired, TypeAlias, TypedDict

from actors import task_order
from vocab.filters import Filters, FiltersWire
from vocab.json_types import JsonObject, WireMap
from vocab.wire_checks import (
    _check_epoch,
    _float,
    _get,
    _int,
    _list,
    _map,
    _opt_str,
    _str,
)

WIRE_VERSION = 1


Routes: TypeAlias = dict[str, list[str]]
"""replica -> sorted conn ids (every registered connection; callers skip dead replicas)."""

DeliverStatus: TypeAlias = Literal["appended", "duplicate", "filtered", "stale", "held"]
AttachOutcome: TypeAlias = Literal["ok", "resync", "too_many_connections"]


# --- wire forms (what to_wire writes; from_wire reads an untrusted WireMap) ---


class LimitsWire(TypedDict):
    max_events: int
    max_age_s: float
    max_seen_ids: int
    max_devices: int
    max_connections: int
    lease_s: float
    replica_grace_s: float
    max_tasks: int
    max_held: int
    hold_s: float


class _EventWire(TypedDict):
    id: str
    type: str
    data: JsonObject
    task_id: str | None
    list_id: str | None


class IncomingEventWire(_EventWire):
    version: NotRequired[int]  # absent when unset


class EventRecordWire(_EventWire):
    seq: int
    ts: float


class DeviceCursorWire(TypedDict):
    seq: int
    seen_at: float


class ConnLeaseWire(TypedDict):
    replica: str
    device: str
    since: float


class SessionMetaWire(TypedDict):
    v: int
    epoch: str
    head: int
    tail: int
    stamps: list[float]
    seen: list[list[str | int]]  # [event_id, seq]
    devices: dict[str, DeviceCursorWire]
    conns: dict[str, ConnLeaseWire]
    filters: FiltersWire
    order: task_order.OrderWire


# --- value types ---


@dataclass(frozen=True)
class Limits:
    max_events: int = 1000  # retention by count
    max_age_s: float = 86400.0  # retention by age (also device expiry)
    max_seen_ids: int = 4096  # dedup memory (bounded)
    max_devices: int = 32  # oldest-seen device evicted beyond this
    max_connections: int = 16  # live (unexpired) connections per user
    lease_s: float = 30.0  # replica liveness lease (the registry; see replica_core)
    # Clock skew allowed between the registry and a session actor when judging a connection
    # by a liveness snapshot: only connections older than snapshot - grace can be dropped.
    replica_grace_s: float = 5.0
    # Per-task order (actors/task_order.py): newest versions remembered (LRU), events held at
    # once in the session (beyond it the oldest is released at once), and how long an event
    # waits for a missing earlier version.
    max_tasks: int = 4096
    max_held: int = 256
    hold_s: float = 0.5

    def __post_init__(self) -> None:
        # Zero/negative limits would make deliver() trim the record it just appended or refuse
        # every connection; reject them at config time instead.
        for name in ("max_events", "max_seen_ids", "max_devices", "max_connections",
                     "max_tasks", "max_held"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be an int >= 1, got {value!r}")
        for name in ("max_age_s", "lease_s", "replica_grace_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"Limits.{name} must be > 0, got {value!r}")
        hold = self.hold_s
        if isinstance(hold, bool) or not isinstance(hold, int | float) or not 0 <= hold <= 10:
            raise ValueError(f"Limits.hold_s must be within 0..10, got {hold!r}")

    def to_wire(self) -> LimitsWire:
        return {
            "max_events": self.max_events,
            "max_age_s": self.max_age_s,
            "max_seen_ids": self.max_seen_ids,
            "max_devices": self.max_devices,
            "max_connections": self.max_connections,
            "lease_s": self.lease_s,
            "replica_grace_s": self.replica_grace_s,
            "max_tasks": self.max_tasks,
            "max_held": self.max_held,
            "hold_s": self.hold_s,
        }

    @classmethod
    def from_wire(cls, d: WireMap) -> Limits:
        # Missing keys fall back to defaults so config can name only what it changes.
        base = cls()
        return cls(
            max_events=_int(d.get("max_events", base.max_events), "max_events"),
            max_age_s=_float(d.get("max_age_s", base.max_age_s), "max_age_s"),
            max_seen_ids=_int(d.get("max_seen_ids", base.max_seen_ids), "max_seen_ids"),
            max_devices=_int(d.get("max_devices", base.max_devices), "max_devices"),
            max_connections=_int(d.get("max_connections", base.max_connections), "max_connections"),
            lease_s=_float(d.get("lease_s", base.lease_s), "lease_s"),
            replica_grace_s=_float(
                d.get("replica_grace_s", base.replica_grace_s), "replica_grace_s"
            ),
            max_tasks=_int(d.get("max_tasks", base.max_tasks), "max_tasks"),
            max_held=_int(d.get("max_held", base.max_held), "max_held"),
            hold_s=_float(d.get("hold_s", base.hold_s), "hold_s"),
        )


@dataclass(frozen=True)
class IncomingEvent:
    id: str
    type: str
    data: JsonObject
    task_id: str | None
    list_id: str | None
    version: int | None = None  # the producer's per-task version; None: no ordering

    def recorded(self, seq: int, ts: float, own_data: bool = False) -> EventRecord:
        """This event as the log holds it: the same fields, plus its seq and time. `own_data`:
        the record gets its own copy of `data` (the log must not share the caller's dict)."""
        data = dict(self.data) if own_data else self.data
        return EventRecord(seq, self.id, self.type, data, self.task_id, self.list_id, ts)

    def to_wire(self) -> IncomingEventWire:
        out: IncomingEventWire = {
            "id": self.id,
            "type": self.type,
            "data": self.data,
            "task_id": self.task_id,
            "list_id": self.list_id,
        }
        if self.version is not None:
            out["version"] = self.version  # absent when unset: the old wire, byte for byte
        return out

    @classmethod
    def from_wire(cls, d: WireMap) -> IncomingEvent:
        raw_version = d.get("version")
        version = None if raw_version is None else _int(raw_version, "version")
        if version is not None and version < 1:
            raise ValueError(f"version must be >= 1, got {version}")
        return cls(
            id=_str(_get(d, "id"), "id"),
            type=_str(_get(d, "type"), "type"),
            data=_map(_get(d, "data"), "data"),
            task_id=_opt_str(d.get("task_id"), "task_id"),
            list_id=_opt_str(d.get("list_id"), "list_id"),
            version=version,
        )


@dataclass(frozen=True)
class EventRecord:
    """What is stored under ``ev:<seq>`` and replayed."""

    seq: int
    id: str
    type: str
    data: JsonObject
    task_id: str | None
    list_id: str | None
    ts: float

    def to_wire(self) -> EventRecordWire:
        return {
            "seq": self.seq,
            "id": self.id,
            "type": self.type,
            "data": self.data,
            "task_id": self.task_id,
            "list_id": self.list_id,
            "ts": self.ts,
        }

    @classmethod
    def from_wire(cls, d: WireMap) -> EventRecord:
        return cls(
            seq=_int(_get(d, "seq"), "seq"),
            id=_str(_get(d, "id"), "id"),
            type=_str(_get(d, "type"), "type"),
            data=_map(_get(d, "data"), "data"),
            task_id=_opt_str(d.get("task_id"), "task_id"),
            list_id=_opt_str(d.get("list_id"), "list_id"),
            ts=_float(_get(d, "ts"), "ts"),
        )


@dataclass(frozen=True)
class DeviceCursor:
    seq: int  # highest seq the device acknowledged (or was resynced to)
    seen_at: float  # last attach/ack/renew; drives expiry and LRU eviction

    def to_wire(self) -> DeviceCursorWire:
        return {"seq": self.seq, "seen_at": self.seen_at}

    @classmethod
    def from_wire(cls, d: WireMap) -> DeviceCursor:
        return cls(seq=_int(_get(d, "seq"), "seq"), seen_at=_float(_get(d, "seen_at"), "seen_at"))


@dataclass(frozen=True)
class ConnLease:
    replica: str
    device: str
    since: float  # attach time: a liveness snapshot older than this can't judge it

    def to_wire(self) -> ConnLeaseWire:
        return {"replica": self.replica, "device": self.device, "since": self.since}

    @classmethod
    def from_wire(cls, d: WireMap) -> ConnLease:
        return cls(
            replica=_str(_get(d, "replica"), "replica"),
            device=_str(_get(d, "device"), "device"),
            since=_float(_get(d, "since"), "since"),
        )


@dataclass(frozen=True)
class Liveness:
    """A snapshot of the replica registry: which gateway replicas were alive at ``as_of``.

    Liveness is kept per replica, never per connection: a connection is dead when its replica
    is not in a snapshot taken well after the connection attached (``since + grace < as_of``), so
    a replica that registered just before a snapshot was taken is never judged by it."""

    replicas: frozenset[str]
    as_of: float

    def holds(self, lease: ConnLease, grace_s: float) -> bool:
        return lease.replica in self.replicas or lease.since + grace_s >= self.as_of


@dataclass
class SessionMeta:
    """The one small state key of a user's session. Events live in their own keys."""

    epoch: str
    head: int  # last assigned seq; 0 = nothing ever appended
    tail: int  # first retained seq; == head + 1 when the log is empty
    # ts of each retained event, index = seq - tail: lets age trimming run without loading events.
    stamps: list[float] = field(default_factory=list)
    # (event_id, seq), most recent last; seq 0 = seen but filtered out.
    seen: list[tuple[str, int]] = field(default_factory=list)
    devices: dict[str, DeviceCursor] = field(default_factory=dict)
    conns: dict[str, ConnLease] = field(default_factory=dict)
    filters: Filters = field(default_factory=Filters)
    # Newest version per task, held events, stale counter (actors/task_order.py).
    order: task_order.OrderState = field(default_factory=task_order.OrderState)

    def check(self) -> None:
        """Raise ValueError when the structural invariants do not hold."""
        _check_epoch(self.epoch)
        if self.head < 0:
            raise ValueError(f"head {self.head} < 0")
        if not 1 <= self.tail <= self.head + 1:
            raise ValueError(f"tail {self.tail} outside 1..head+1 ({self.head + 1})")
        if len(self.stamps) != self.head - self.tail + 1:
            raise ValueError(
                f"{len(self.stamps)} stamps for {self.head - self.tail + 1} retained events"
            )
        for event_id, seq in self.seen:
            if not 0 <= seq <= self.head:
                raise ValueError(f"seen {event_id!r} has seq {seq} outside 0..head")
        for name, cursor in self.devices.items():
            if not 0 <= cursor.seq <= self.head:
                raise ValueError(f"device {name!r} cursor {cursor.seq} outside 0..head")
        self.order.check()

    def to_wire(self) -> SessionMetaWire:
        return {
            "v": WIRE_VERSION,
            "epoch": self.epoch,
            "head": self.head,
            "tail": self.tail,
            "stamps": list(self.stamps),
            "seen": [[event_id, seq] for event_id, seq in self.seen],
            "devices": {name: c.to_wire() for name, c in self.devices.items()},
            "conns": {cid: lease.to_wire() for cid, lease in self.conns.items()},
            "filters": self.filters.to_wire(),
            "order": self.order.to_wire(),
        }

    @classmethod
    def from_wire(cls, d: WireMap) -> SessionMeta:
        """Parse and validate; raises ValueError rather than running on a corrupt meta."""
        version = d.get("v", WIRE_VERSION)
        if version != WIRE_VERSION:
            raise ValueError(f"unsupported session meta version {version!r}")
        seen: list[tuple[str, int]] = []
        for item in _list(_get(d, "seen"), "seen"):
            pair = _list(item, "seen item")
            if len(pair) != 2:
                raise ValueError("seen item: expected [event_id, seq]")
            seen.append((_str(pair[0], "seen id"), _int(pair[1], "seen seq")))
        meta = cls(
            epoch=_str(_get(d, "epoch"), "epoch"),
            head=_int(_get(d, "head"), "head"),
            tail=_int(_get(d, "tail"), "tail"),
            stamps=[_float(s, "stamp") for s in _list(_get(d, "stamps"), "stamps")],
            seen=seen,
            devices={
                name: DeviceCursor.from_wire(_map(v, "device"))
                for name, v in _map(_get(d, "devices"), "devices").items()
            },
            conns={
                cid: ConnLease.from_wire(_map(v, "conn"))
                for cid, v in _map(_get(d, "conns"), "conns").items()
            },
            filters=Filters.from_wire(_map(d.get("filters") or {}, "filters")),
            order=task_order.OrderState.from_wire(_map(d.get("order") or {}, "order")),
        )
        meta.check()
        return meta


