"""Pure rules of the per-user ``UserSession`` actor.

Everything here is deterministic: no I/O, no Dapr, no clock, no randomness. The actor shell passes
``now`` and new epochs in, persists what the functions return and saves the (small) meta.

Mutation contract: every function taking a ``SessionMeta`` may change it *in place*; the shell
saves the meta after the call and writes/deletes the ``ev:<seq>`` keys named in the result. The
shell is expected to load replay events in the same actor turn as ``attach``/``read_range``,
because a later turn may already have trimmed them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from actors import task_order
from actors.session_types import (
    WIRE_VERSION,
    AttachOutcome,
    ConnLease,
    DeliverStatus,
    DeviceCursor,
    EventRecord,
    IncomingEvent,
    Limits,
    Liveness,
    Routes,
    SessionMeta,
)
from vocab.filters import Filters
from vocab.position import Position
from vocab.wire_checks import (
    _check_epoch,
)

__all__ = [
    "WIRE_VERSION",
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
    record = ev.recorded(seq, ts, own_data=True)
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
