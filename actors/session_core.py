"""Pure rules of the per-user ``UserSession`` actor.

Everything here is deterministic: no I/O, no Dapr, no clock, no randomness. The actor shell passes
``now`` and new epochs in, persists what the functions return and saves the (small) meta.

Mutation contract: every function taking a ``SessionMeta`` may change it *in place*; the shell
saves the meta after the call and writes/deletes the ``ev:<seq>`` keys named in the result. The
shell is expected to load replay events in the same actor turn as ``attach``/``read_range``,
because a later turn may already have trimmed them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

from actors import task_order
from vocab.filters import Filters
from vocab.position import Position
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

__all__ = [
    "AttachOutcome",
    "AttachResult",
    "ConnLease",
    "DeliverResult",
    "DeliverStatus",
    "DeviceCursor",
    "EventRecord",
    "Filters",
    "IncomingEvent",
    "Limits",
    "Liveness",
    "Position",
    "Routes",
    "SessionMeta",
    "ack",
    "attach",
    "deliver",
    "detach",
    "forget_dead",
    "new_session",
    "read_range",
    "release",
    "routes",
    "set_filters",
    "trim",
]

WIRE_VERSION = 1


Routes: TypeAlias = dict[str, list[str]]
"""replica -> sorted conn ids (every registered connection; callers skip dead replicas)."""

DeliverStatus: TypeAlias = Literal["appended", "duplicate", "filtered", "stale", "held"]
AttachOutcome: TypeAlias = Literal["ok", "resync", "too_many_connections"]


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

    def to_wire(self) -> dict[str, Any]:
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
    def from_wire(cls, d: Mapping[str, Any]) -> Limits:
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
    data: dict[str, Any]
    task_id: str | None
    list_id: str | None
    version: int | None = None  # the producer's per-task version; None: no ordering

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
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
    def from_wire(cls, d: Mapping[str, Any]) -> IncomingEvent:
        version = d.get("version")
        if version is not None and _int(version, "version") < 1:
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
    data: dict[str, Any]
    task_id: str | None
    list_id: str | None
    ts: float

    def to_wire(self) -> dict[str, Any]:
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
    def from_wire(cls, d: Mapping[str, Any]) -> EventRecord:
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

    def to_wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "seen_at": self.seen_at}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> DeviceCursor:
        return cls(seq=_int(_get(d, "seq"), "seq"), seen_at=_float(_get(d, "seen_at"), "seen_at"))


@dataclass(frozen=True)
class ConnLease:
    replica: str
    device: str
    since: float  # attach time: a liveness snapshot older than this can't judge it

    def to_wire(self) -> dict[str, Any]:
        return {"replica": self.replica, "device": self.device, "since": self.since}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ConnLease:
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

    def to_wire(self) -> dict[str, Any]:
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
    def from_wire(cls, d: Mapping[str, Any]) -> SessionMeta:
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


def new_session(epoch: str) -> SessionMeta:
    """A fresh, empty log. The epoch must be new (random) so old positions cannot match it."""
    return SessionMeta(epoch=_check_epoch(epoch), head=0, tail=1)


@dataclass(frozen=True)
class DeliverResult:
    status: DeliverStatus
    seq: int  # assigned seq; original seq for a duplicate; 0 when filtered
    record: EventRecord | None  # the new record to store (appended only)
    routes: Routes  # appended and duplicate: a redelivery can be re-sent (conns drop dup seqs)
    delete: list[int]  # seqs trimmed by this call (the shell drops them from storage)
    newest: int = 0  # stale/held: the newest version already recorded for the task
    buckets: frozenset[int] = frozenset()  # task-order bucket keys the call changed
    # Held events this call released (event id, result), in the order they were recorded.
    released: tuple[tuple[str, DeliverResult], ...] = ()


@dataclass(frozen=True)
class AttachResult:
    outcome: AttachOutcome
    epoch: str
    head: int
    start: int  # position the stream continues from: replay is start+1 .. head (when ok)
    replay_from: int  # first seq the shell must load (start + 1); empty if replay_from > head
    resumed: bool  # a client position or device cursor was honoured
    reason: str  # "" or why resync: "epoch_mismatch" | "too_old" | "ahead_of_log"


# --- internal rules ---


def _seen_seq(meta: SessionMeta, event_id: str) -> int | None:
    # Linear scan from the newest end: redeliveries are usually recent, and a bounded list stays
    # a plain JSON array in the meta instead of a second index that could drift from it.
    for seen_id, seq in reversed(meta.seen):
        if seen_id == event_id:
            return seq
    return None


def _bound_seen(meta: SessionMeta, limits: Limits) -> None:
    excess = len(meta.seen) - limits.max_seen_ids
    if excess > 0:
        del meta.seen[:excess]


def forget_dead(meta: SessionMeta, live: Liveness | None, limits: Limits) -> bool:
    """Drop the connections a liveness snapshot shows dead (mutates ``meta``); True when any
    was dropped. Without a snapshot nothing is judged."""
    if live is None:
        return False
    grace = limits.replica_grace_s
    dead = [c for c, lease in meta.conns.items() if not live.holds(lease, grace)]
    for cid in dead:
        del meta.conns[cid]
    return bool(dead)


def _evict_devices(meta: SessionMeta, limits: Limits, keep: str | None) -> None:
    # LRU by seen_at (device id breaks ties so replicas agree); never evict the device being
    # attached/acked right now, even if a skewed clock makes it look oldest.
    excess = len(meta.devices) - limits.max_devices
    if excess <= 0:
        return
    victims = sorted(
        (name for name in meta.devices if name != keep),
        key=lambda name: (meta.devices[name].seen_at, name),
    )
    for name in victims[:excess]:
        del meta.devices[name]


# --- public operations (all mutate ``meta`` in place) ---


def routes(meta: SessionMeta) -> Routes:
    """Registered connections grouped by replica. The caller skips replicas its liveness
    snapshot says are dead; a later attach with a snapshot drops them for good."""
    grouped: dict[str, list[str]] = {}
    for cid, lease in meta.conns.items():
        grouped.setdefault(lease.replica, []).append(cid)
    return {replica: sorted(grouped[replica]) for replica in sorted(grouped)}


def trim(meta: SessionMeta, now: float, limits: Limits) -> list[int]:
    """Drop expired devices, then retained events from the tail while any of: over
    ``max_events``, older than ``max_age_s``, or acknowledged by every known device.
    Returns the removed seqs (the shell deletes their ``ev:<seq>`` keys)."""
    for name in [n for n, c in meta.devices.items() if c.seen_at + limits.max_age_s <= now]:
        del meta.devices[name]
    # Re-apply bounds here too so lowering a limit takes effect without new traffic.
    _evict_devices(meta, limits, keep=None)
    _bound_seen(meta, limits)

    # With no devices nobody's cursor can justify dropping events; 0 never matches a seq.
    floor = min((c.seq for c in meta.devices.values()), default=0)
    first = meta.tail
    new_tail = first
    while new_tail <= meta.head:
        over_count = meta.head - new_tail + 1 > limits.max_events
        too_old = now - meta.stamps[new_tail - first] > limits.max_age_s
        if not (over_count or too_old or new_tail <= floor):
            break
        new_tail += 1
    if new_tail == first:
        return []
    del meta.stamps[: new_tail - first]
    meta.tail = new_tail
    return list(range(first, new_tail))


def deliver(meta: SessionMeta, ev: IncomingEvent, now: float, limits: Limits) -> DeliverResult:
    """Append one published event (mutates ``meta``).

    Dedup by event id comes first, so a redelivery never consumes a seq and leaves ``meta``
    untouched. A duplicate is routed again only while its record is still retained (a filtered
    or trimmed original has nothing to re-send); an event already held is answered ``held``
    again. Then, for an event with a version and a task, the per-task order
    (actors/task_order.py): ``stale`` and ``held`` consume no seq and are not remembered as seen
    (a held event is kept in ``meta.order.held``). Then the persisted filters apply; a filtered
    event is remembered with seq 0 so its redelivery is also a duplicate (its version counts as
    recorded). Last, the held events this made due are released (``released``).
    """
    prior = _seen_seq(meta, ev.id)
    if prior is not None:
        retained = meta.tail <= prior <= meta.head
        return DeliverResult("duplicate", prior, None, routes(meta) if retained else {}, [])
    if ev.id in meta.order.held:
        return DeliverResult("held", 0, None, {}, [], released=tuple(release(meta, now, limits)))

    buckets: frozenset[int] = frozenset()
    if ev.version is not None and ev.task_id is not None:
        verdict = task_order.admit(
            meta.order, ev.id, ev.type, ev.task_id, ev.version, now, hold_s=limits.hold_s,
            max_tasks=limits.max_tasks, event=ev.to_wire())
        if verdict.status == "stale":
            return DeliverResult("stale", 0, None, {}, [], verdict.newest)
        if verdict.status == "held":
            # Beyond max_held the oldest held event is released at once.
            return DeliverResult("held", 0, None, {}, [], verdict.newest,
                                 released=tuple(release(meta, now, limits)))
        buckets = verdict.buckets
    res = _append(meta, ev, now, limits, buckets)
    return replace(res, released=tuple(release(meta, now, limits))) if meta.order.held else res


def _append(meta: SessionMeta, ev: IncomingEvent, now: float, limits: Limits,
            buckets: frozenset[int]) -> DeliverResult:
    """The filters, then a new seq (the event's order, if any, is already recorded)."""
    if not meta.filters.matches(ev.type, ev.task_id, ev.list_id):
        meta.seen.append((ev.id, 0))
        _bound_seen(meta, limits)
        return DeliverResult("filtered", 0, None, {}, [], buckets=buckets)

    seq = meta.head + 1
    ts = float(now)  # float even when the shell passes an int, so wire round trips are exact
    record = EventRecord(seq, ev.id, ev.type, dict(ev.data), ev.task_id, ev.list_id, ts)
    meta.head = seq
    meta.stamps.append(ts)
    meta.seen.append((ev.id, seq))
    _bound_seen(meta, limits)
    deleted = trim(meta, now, limits)
    return DeliverResult("appended", seq, record, routes(meta), deleted, buckets=buckets)


def release(meta: SessionMeta, now: float, limits: Limits) -> list[tuple[str, DeliverResult]]:
    """Record every held event that is due (its gap filled, its hold over, or over
    ``max_held``), in the order task_order releases them (mutates ``meta``). Each is appended,
    filtered, or stale (``newest`` set)."""
    out: list[tuple[str, DeliverResult]] = []
    while (due := task_order.release_next(
            meta.order, now, hold_s=limits.hold_s, max_tasks=limits.max_tasks,
            max_held=limits.max_held)) is not None:
        eid, held, verdict = due
        if verdict.status != "new":
            out.append((eid, DeliverResult("stale", 0, None, {}, [], verdict.newest)))
            continue
        ev = IncomingEvent.from_wire(held.event)
        out.append((eid, _append(meta, ev, now, limits, verdict.buckets)))
    return out


def attach(
    meta: SessionMeta,
    conn_id: str,
    replica: str,
    device: str,
    since: Position | None,
    now: float,
    limits: Limits,
    live: Liveness | None = None,
) -> AttachResult:
    """Register a connection and decide where its stream starts (mutates ``meta``).

    Beyond the base rules: on ``ok`` a known device's cursor is raised to ``start`` (a client
    position means "processed up to here", i.e. an implicit ack), never lowered. On
    ``too_many_connections`` only connections of dead replicas (by ``live``) are dropped and
    ``start`` is ``head``.
    """
    forget_dead(meta, live, limits)
    head = meta.head
    if conn_id not in meta.conns and len(meta.conns) >= limits.max_connections:
        return AttachResult("too_many_connections", meta.epoch, head, head, head + 1, False, "")

    known = meta.devices.get(device)
    oldest_ok = meta.tail - 1  # a position here still has every later event retained
    reason = ""
    start = head
    resumed = False
    if since is not None:
        if since.epoch != meta.epoch:
            reason = "epoch_mismatch"
        elif since.seq > head:
            reason = "ahead_of_log"
        elif since.seq < oldest_ok:
            reason = "too_old"
        else:
            start, resumed = since.seq, True
    elif known is not None:
        if known.seq < oldest_ok:
            reason = "too_old"
        else:
            start, resumed = known.seq, True

    if reason:
        # The client reloads from the todo API, so everything up to head counts as processed.
        cursor = head
    elif known is None:
        cursor = start
    else:
        cursor = max(known.seq, start)
    meta.conns[conn_id] = ConnLease(replica, device, now)
    meta.devices[device] = DeviceCursor(cursor, now)
    _evict_devices(meta, limits, keep=device)
    outcome: AttachOutcome = "resync" if reason else "ok"
    return AttachResult(outcome, meta.epoch, head, start, start + 1, resumed, reason)


def detach(meta: SessionMeta, conn_id: str) -> None:
    """Forget a connection; unknown ids are ignored (it may already have been dropped)."""
    meta.conns.pop(conn_id, None)


def ack(meta: SessionMeta, device: str, seq: int, now: float, limits: Limits) -> list[int]:
    """Advance a device cursor to ``min(seq, head)``, never backwards (mutates ``meta``).

    An unknown device is registered with that cursor (never below 0). Returns seqs to delete.
    """
    known = meta.devices.get(device)
    base = known.seq if known is not None else 0
    meta.devices[device] = DeviceCursor(max(base, min(seq, meta.head)), now)
    _evict_devices(meta, limits, keep=device)
    return trim(meta, now, limits)


def set_filters(meta: SessionMeta, filters: Filters) -> None:
    """Replace the persisted filters; they apply to future deliveries (the shell applies them to
    replay with ``Filters.matches``)."""
    meta.filters = filters


def read_range(meta: SessionMeta, after: int, limit: int) -> tuple[int, int] | None:
    """Seqs ``(first, last)`` to load for "events after ``after``", at most ``limit`` of them.

    None when events after ``after`` were trimmed (caller must resync). The range is empty
    (``first > last``) when ``after >= head`` or ``limit <= 0``.
    """
    if after < meta.tail - 1:
        return None
    return after + 1, min(meta.head, after + max(limit, 0))
