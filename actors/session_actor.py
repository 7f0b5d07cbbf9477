"""UserSession actor shell: decode a contract request, apply session_core, write one
transaction, answer. Storage layout in actors/session_storage.py.

The active actor keeps its session in memory between turns (turn-based concurrency makes it the
only writer), so a turn never reads the store: it writes meta plus the touched chunk in ONE
transaction on a pooled connection. If that write fails, the in-memory copy is dropped and the
next turn rebuilds from the store, so memory never runs ahead of what was persisted.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from dapr.actor import Actor

from actors import contract as c
from actors import session_core as core
from actors import session_storage as storage
from actors.interfaces import UserSessionInterface
from actors.state_client import STATE
from actors.wire import pack, unpack

log = logging.getLogger("actors.session")

TYPE_NAME = "UserSession"
REPLAY_PAGE = 500  # events per attach/read answer; the gateway pages for more
# daprd refuses bodies over 4 MiB (dapr-http-max-request-size): a page of large events stops early.
REPLAY_BYTES = 1 << 20


def _limits_from_env() -> core.Limits:
    env = os.environ.get
    return core.Limits(
        max_events=int(env("TASKSYNC_RETENTION_EVENTS", "1000")),
        max_age_s=float(env("TASKSYNC_RETENTION_SECONDS", "86400")),
        max_connections=int(env("TASKSYNC_MAX_CONNECTIONS_PER_USER", "16")),
        lease_s=float(env("TASKSYNC_LEASE_SECONDS", "15")),
    )


LIMITS = _limits_from_env()


class Session:
    """The in-memory copy of one user's session: meta plus the retained records by seq."""

    def __init__(self, meta: core.SessionMeta, records: dict[int, core.EventRecord]) -> None:
        self.meta = meta
        self.records = records

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


def _fresh(reason: str, user: str, keep_filters: core.Filters | None = None) -> Session:
    # No usable log = it starts from nothing: a new epoch tells every client to resync.
    meta = core.new_session(uuid.uuid4().hex[:16])
    if keep_filters is not None:
        meta.filters = keep_filters
    if reason:
        log.warning("user %s: session log starts a new epoch %s: %s", user, meta.epoch, reason)
    return Session(meta, {})


class UserSession(Actor, UserSessionInterface):
    _session: Session | None = None

    async def _load(self) -> Session:
        if self._session is not None:
            return self._session
        user = self.id.id
        stored = await STATE.get(TYPE_NAME, user, storage.META_KEY)
        if stored is None:
            session = _fresh("", user)
        else:
            try:
                needed = storage.chunks_needed(stored)
                got = await STATE.get_many(
                    TYPE_NAME, user, [storage.chunk_key(k) for k in needed]
                )
                meta, records = storage.restore(stored, dict(zip(needed, got, strict=True)))
                session = Session(meta, records)
            except storage.LogLost as e:
                filters = core.Filters.from_wire(stored.get("filters") or {})
                session = _fresh(f"the store lost events ({e})", user, filters)
            except (ValueError, TypeError) as e:
                session = _fresh(f"unreadable stored session ({e})", user)
        self._session = session
        return session

    async def _commit(self, s: Session, appended: list[int], deleted: list[int]) -> None:
        for seq in deleted:
            s.records.pop(seq, None)
        ops = storage.write_ops(s.meta, s.records, appended, deleted)
        await STATE.transact(TYPE_NAME, self.id.id, ops)

    async def _turn(
        self,
        payload: bytes,
        body: Callable[[dict[str, Any], Session], Awaitable[dict[str, Any]]],
    ) -> bytes:
        try:
            return pack(await body(unpack(payload), await self._load()))
        except BaseException:
            # Memory may be ahead of the store now: rebuild from the store on the next turn.
            self._session = None
            raise

    async def deliver(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any], s: Session) -> dict[str, Any]:
            r = c.DeliverRequest.from_wire(req)
            now = time.time()
            results: list[c.Delivered] = []
            appended: list[int] = []
            deleted: list[int] = []
            # Connections of replicas the caller's snapshot shows dead get no route (and are
            # persisted gone with this turn's write, if it has one).
            core.forget_dead(s.meta, r.live, LIMITS)
            for ev in r.events:
                res = core.deliver(s.meta, ev, now, LIMITS)
                if res.record is not None:
                    s.records[res.record.seq] = res.record
                    appended.append(res.record.seq)
                deleted += res.delete
                seq = res.seq if res.status == "appended" or res.routes else 0
                results.append(c.Delivered(res.status, seq))
            if appended or deleted:
                await self._commit(s, appended, deleted)
            routes = core.routes(s.meta)
            return c.DeliverAnswer(s.meta.epoch, results, routes).to_wire()

        return await self._turn(payload, body)

    async def attach(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any], s: Session) -> dict[str, Any]:
            r = c.AttachRequest.from_wire(req)
            since = core.Position.parse(r.since) if r.since else None
            res = core.attach(
                s.meta, r.conn, r.replica, r.device, since, time.time(), LIMITS, r.live
            )
            answer = c.AttachAnswer(
                res.outcome, res.epoch, res.head, res.start, res.resumed, res.reason
            )
            if res.outcome == "too_many_connections":
                return answer.to_wire()
            events: list[core.EventRecord] = []
            if res.outcome == "ok" and res.replay_from <= res.head:
                events = s.page(res.replay_from, min(res.head, res.replay_from + REPLAY_PAGE - 1))
            await self._commit(s, [], [])
            more = bool(events) and events[-1].seq < res.head
            return c.AttachAnswer(
                res.outcome, res.epoch, res.head, res.start, res.resumed, res.reason,
                events, more,
            ).to_wire()

        return await self._turn(payload, body)

    async def read(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any], s: Session) -> dict[str, Any]:
            r = c.ReadRequest.from_wire(req)
            meta = s.meta
            rng = core.read_range(meta, r.after, max(1, min(r.limit, REPLAY_PAGE)))
            if r.epoch != meta.epoch or rng is None:
                return c.ReadAnswer(True, meta.epoch, meta.head).to_wire()
            first, last = rng
            events = s.page(first, last) if first <= last else []
            return c.ReadAnswer(False, meta.epoch, meta.head, events).to_wire()

        return await self._turn(payload, body)

    async def detach(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any], s: Session) -> dict[str, Any]:
            conns = c.DetachRequest.from_wire(req).conns
            if any(cid in s.meta.conns for cid in conns):
                for cid in conns:
                    core.detach(s.meta, cid)
                await self._commit(s, [], [])
            return {"ok": True}

        return await self._turn(payload, body)

    async def ack(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any], s: Session) -> dict[str, Any]:
            r = c.AckRequest.from_wire(req)
            deleted = core.ack(s.meta, r.device, r.seq, time.time(), LIMITS)
            await self._commit(s, [], deleted)
            return c.AckAnswer(s.meta.tail, s.meta.head).to_wire()

        return await self._turn(payload, body)

    async def set_filters(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any], s: Session) -> dict[str, Any]:
            msg = c.FiltersMessage.from_wire(req)
            core.set_filters(s.meta, msg.filters)
            await self._commit(s, [], [])
            return msg.to_wire()

        return await self._turn(payload, body)

    async def inspect(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any], s: Session) -> dict[str, Any]:
            return {"meta": s.meta.to_wire()}

        return await self._turn(payload, body)
