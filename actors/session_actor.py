"""UserSession actor shell: decode a contract request, apply session_core, write one
transaction, answer. Storage layout in actors/session_storage.py.

The active actor keeps its session in memory between turns (turn-based concurrency makes it the
only writer), so a turn never reads the store: it writes meta plus the touched chunk in ONE
transaction on a pooled connection. If that write fails, the in-memory copy is dropped and the
next turn rebuilds from the store, so memory never runs ahead of what was persisted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from dapr.actor import Actor

from actors import contract as c
from actors import memory_generation
from actors import session_core as core
from actors import session_service as svc
from actors import session_storage as storage
from actors.interfaces import UserSessionInterface
from actors.session_service import Session
from actors.settings import load_or_exit
from actors.state_client import STATE
from actors.wire import pack, unpack
from vocab.json_types import WireMap
from vocab.wire_checks import _map

log = logging.getLogger("actors.session")

TYPE_NAME = "UserSession"


LIMITS = load_or_exit().limits()


def _fresh(reason: str, user: str, keep_filters: core.Filters | None = None) -> Session:
    session = Session.fresh(keep_filters)
    if reason:
        log.warning("user %s: session log starts a new epoch %s: %s",
                    user, session.meta.epoch, reason)
    return session


class UserSession(Actor, UserSessionInterface):
    _session: Session | None = None
    _generation = -1

    async def _load(self) -> Session:
        if self._session is not None and self._generation == memory_generation.current():
            return self._session
        self._generation = memory_generation.current()
        user = self.id.id
        stored = await STATE.get(TYPE_NAME, user, storage.META_KEY)
        if stored is None:
            session = _fresh("", user)
        else:
            stored_meta: WireMap = {}
            try:
                stored_meta = _map(stored, "stored meta")
                needed, buckets = storage.keys_needed(stored_meta)
                held = [storage.HELD_KEY] if storage.held_needed(stored_meta) else []
                got = await STATE.get_many(
                    TYPE_NAME, user, [storage.chunk_key(k) for k in needed]
                    + [storage.order_key(b) for b in buckets] + held
                )
                n, m = len(needed), len(needed) + len(buckets)
                meta, records = storage.restore(
                    stored_meta, dict(zip(needed, got[:n], strict=True)),
                    dict(zip(buckets, got[n:m], strict=True)), got[m] if held else None)
                session = Session(meta, records)
            except storage.LogLost as e:
                filters = core.Filters.from_wire(_map(stored_meta.get("filters") or {}, "filters"))
                session = _fresh(f"the store lost events ({e})", user, filters)
            except (ValueError, TypeError) as e:
                session = _fresh(f"unreadable stored session ({e})", user)
        self._session = session
        return session

    async def _commit(self, s: Session, write: svc.Write | None) -> None:
        if write is not None:
            ops = storage.write_ops(s.meta, s.records, write.appended, write.deleted,
                                    write.order, write.held)
            await STATE.transact(TYPE_NAME, self.id.id, ops)
            s.saved = True

    async def _turn(
        self,
        payload: bytes,
        body: Callable[[WireMap, Session], Awaitable[WireMap]],
    ) -> bytes:
        try:
            return pack(await body(unpack(payload), await self._load()))
        except BaseException:
            # Memory may be ahead of the store now: rebuild from the store on the next turn.
            self._session = None
            raise

    async def deliver(self, payload: bytes) -> bytes:
        async def body(req: WireMap, s: Session) -> WireMap:
            answer, write = svc.deliver(s, c.DeliverRequest.from_wire(req), time.time(), LIMITS)
            await self._commit(s, write)
            return answer.to_wire()

        return await self._turn(payload, body)

    async def attach(self, payload: bytes) -> bytes:
        async def body(req: WireMap, s: Session) -> WireMap:
            answer, write = svc.attach(s, c.AttachRequest.from_wire(req), time.time(), LIMITS)
            await self._commit(s, write)
            return answer.to_wire()

        return await self._turn(payload, body)

    async def read(self, payload: bytes) -> bytes:
        async def body(req: WireMap, s: Session) -> WireMap:
            answer, write = svc.read(s, c.ReadRequest.from_wire(req))
            await self._commit(s, write)
            return answer.to_wire()

        return await self._turn(payload, body)

    async def detach(self, payload: bytes) -> bytes:
        async def body(req: WireMap, s: Session) -> WireMap:
            await self._commit(s, svc.detach(s, c.DetachRequest.from_wire(req)))
            return {"ok": True}

        return await self._turn(payload, body)

    async def ack(self, payload: bytes) -> bytes:
        async def body(req: WireMap, s: Session) -> WireMap:
            answer, write = svc.ack(s, c.AckRequest.from_wire(req), time.time(), LIMITS)
            await self._commit(s, write)
            return answer.to_wire()

        return await self._turn(payload, body)

    async def set_filters(self, payload: bytes) -> bytes:
        async def body(req: WireMap, s: Session) -> WireMap:
            answer, write = svc.set_filters(s, c.FiltersMessage.from_wire(req))
            await self._commit(s, write)
            return answer.to_wire()

        return await self._turn(payload, body)

    async def inspect(self, payload: bytes) -> bytes:
        async def body(req: WireMap, s: Session) -> WireMap:
            # The limits too: operators see the retention next to the log (gateway/admin.py).
            return {"meta": s.meta.to_wire(), "limits": LIMITS.to_wire()}

        return await self._turn(payload, body)
