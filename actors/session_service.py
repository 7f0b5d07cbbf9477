"""One turn of every UserSession method, on the in-memory session, without I/O.

The actor shell (session_actor.py) and the in-memory backend used by the gateway's in-process
tests (gateway/sessions_memory.py) run exactly these functions, so both backends answer alike.
Each turn returns the answer and what the shell must persist: a `Write` (appended and trimmed
seqs) or None when nothing changed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import msgpack

from actors import contract as c
from actors import session_core as core
from actors import task_order

REPLAY_PAGE = 500  # events per attach/read answer; the gateway pages for more
# daprd refuses bodies over 4 MiB (dapr-http-max-request-size): a page of large events stops early.
REPLAY_BYTES = 1 << 20


@dataclass
class Write:
    appended: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    order: set[int] = field(default_factory=set)  # task-order buckets changed (task_order)
    held: bool = False  # the held events changed (their key is rewritten)


class Session:
    """The in-memory copy of one user's session: meta plus the retained records by seq."""

    def __init__(self, meta: core.SessionMeta, records: dict[int, core.EventRecord],
                 saved: bool = True) -> None:
        self.meta = meta
        self.records = records
        # False for a fresh log nothing was written for yet: its epoch would not survive a
        # reactivation, so even a read persists it (a reader keeps the epoch it was told).
        self.saved = saved

    @staticmethod
    def fresh(filters: core.Filters | None = None) -> Session:
        # No usable log = it starts from nothing: a new epoch tells every client to resync.
        meta = core.new_session(uuid.uuid4().hex[:16])
        if filters is not None:
            meta.filters = filters
        return Session(meta, {}, saved=False)

    def page(self, first: int, last: int) -> list[core.EventRecord]:
        """Records first..last, cut short after REPLAY_BYTES (always at least one)."""
        out: list[core.EventRecord] = []
        size = 0
        for seq in range(first, last + 1):
            rec = self.records[seq]
            if out and size >= REPLAY_BYTES:
                break
            size += len(msgpack.packb(rec.data))
            out.append(rec)
        return out

    def drop(self, deleted: list[int]) -> None:
        for seq in deleted:
            self.records.pop(seq, None)


def deliver(s: Session, r: c.DeliverRequest, now: float, limits: core.Limits
            ) -> tuple[c.DeliverAnswer, Write | None]:
    """One turn, one write: first the held events whose hold is over (or, for a request without
    events, only that), then every event of the batch in order, each followed by the held events
    it made due (their gap filled). Released events of earlier turns come back in ``released``;
    a request event held and released within this turn answers with its outcome (its seq comes
    after the events that filled its gap; results stay in request order)."""
    write = Write()
    order = s.meta.order
    held_before, stale_before = dict(order.held), order.stale
    # Connections of replicas the caller's snapshot shows dead get no route (persisted gone with
    # this turn's write, if it has one).
    core.forget_dead(s.meta, r.live, limits)
    released: list[tuple[str, core.DeliverResult]] = []

    def keep(res: core.DeliverResult) -> None:
        if res.record is not None:
            s.records[res.record.seq] = res.record
            write.appended.append(res.record.seq)
        write.deleted += res.delete
        write.order |= res.buckets

    for pair in core.release(s.meta, now, limits):
        keep(pair[1])
        released.append(pair)
    results: list[c.Delivered] = []
    for ev in r.events:
        res = core.deliver(s.meta, ev, now, limits)
        keep(res)
        for pair in res.released:
            keep(pair[1])
            released.append(pair)
        # A duplicate is routed again only while retained (its routes say so).
        seq = res.seq if res.status == "appended" or res.routes else 0
        results.append(c.Delivered(res.status, seq, res.newest))
    held_here: dict[str, list[int]] = {}
    for i, (ev, got) in enumerate(zip(r.events, results, strict=True)):
        if got.status == "held":
            held_here.setdefault(ev.id, []).append(i)
    # A request event released before it came (its hold ended first) is a duplicate in its
    # result, which routes it: not listed twice.
    routed = {(ev.id, got.seq) for ev, got in zip(r.events, results, strict=True)
              if got.status == "duplicate" and got.seq}
    records: list[core.EventRecord] = []
    for eid, res in released:
        if eid in held_here:
            for i in held_here[eid]:
                results[i] = c.Delivered(res.status, res.seq, res.newest)
        elif res.record is not None and (eid, res.seq) not in routed:
            records.append(res.record)
    s.drop(write.deleted)
    write.held = order.held != held_before
    answer = c.DeliverAnswer(s.meta.epoch, results, core.routes(s.meta), records,
                             task_order.next_due(order, now, limits.hold_s))
    changed = write.appended or write.deleted or write.order or write.held
    return answer, (write if changed or order.stale != stale_before else None)


def attach(s: Session, r: c.AttachRequest, now: float, limits: core.Limits
           ) -> tuple[c.AttachAnswer, Write | None]:
    since = core.Position.parse(r.since) if r.since else None
    res = core.attach(s.meta, r.conn, r.replica, r.device, since, now, limits, r.live)
    if res.outcome == "too_many_connections":
        return c.AttachAnswer(res.outcome, res.epoch, res.head, res.start, res.resumed,
                              res.reason, filters=s.meta.filters), None
    events: list[core.EventRecord] = []
    if res.outcome == "ok" and res.replay_from <= res.head:
        events = s.page(res.replay_from, min(res.head, res.replay_from + REPLAY_PAGE - 1))
    more = bool(events) and events[-1].seq < res.head
    answer = c.AttachAnswer(res.outcome, res.epoch, res.head, res.start, res.resumed,
                            res.reason, events, more, s.meta.filters)
    return answer, Write()


def read(s: Session, r: c.ReadRequest) -> tuple[c.ReadAnswer, Write | None]:
    meta = s.meta
    write = None if s.saved else Write()
    rng = core.read_range(meta, r.after, max(1, min(r.limit, REPLAY_PAGE)))
    if r.epoch != meta.epoch or rng is None:
        return c.ReadAnswer(True, meta.epoch, meta.head), write
    first, last = rng
    events = s.page(first, last) if first <= last else []
    return c.ReadAnswer(False, meta.epoch, meta.head, events), write


def detach(s: Session, r: c.DetachRequest) -> Write | None:
    if not any(cid in s.meta.conns for cid in r.conns):
        return None
    for cid in r.conns:
        core.detach(s.meta, cid)
    return Write()


def ack(s: Session, r: c.AckRequest, now: float, limits: core.Limits
        ) -> tuple[c.AckAnswer, Write]:
    deleted = core.ack(s.meta, r.device, r.seq, now, limits)
    s.drop(deleted)
    return c.AckAnswer(s.meta.tail, s.meta.head), Write(deleted=deleted)


def set_filters(s: Session, r: c.FiltersMessage) -> tuple[c.FiltersMessage, Write]:
    core.set_filters(s.meta, r.filters)
    return r, Write()
