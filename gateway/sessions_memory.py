"""The sessions port in memory: the same turns as the UserSession actor (actors/session_service),
the same storage layout (applied to a dict) and registry rules, without Dapr.

For in-process tests of the Hub, Fanout, FrameHandler and transports: fast and deterministic.
Turn-based concurrency is kept with one lock per user, and faults can be injected per user.
The real guarantee still comes from the contract suite run against daprd as well.
"""

from __future__ import annotations

import asyncio
import time

from actors import contract as c
from actors import replica_core
from actors import session_service as svc
from actors import session_storage as storage
from actors.session_core import Filters, IncomingEvent, Limits, Liveness
from gateway.actor_client import ActorUnavailable
from gateway.sessions import RegistryView
from vocab.json_types import JsonObject
from vocab.wire_checks import _map


class MemorySessions:
    def __init__(self, replica: str, world: World | None = None) -> None:
        self.replica = replica
        self.world = world if world is not None else World()

    async def deliver(
        self, user: str, events: list[IncomingEvent], live: Liveness | None
    ) -> c.DeliverAnswer:
        async with self.world.turn(user, "deliver") as s:
            answer, write = svc.deliver(s, c.DeliverRequest(events, live), self.world.now(),
                                        self.world.limits)
            self.world.persist(user, s, write)
            return answer

    async def attach(self, user: str, conn: str, device: str, since: str | None,
                     live: Liveness | None) -> c.AttachAnswer:
        async with self.world.turn(user, "attach") as s:
            req = c.AttachRequest(conn, self.replica, device, since, live)
            answer, write = svc.attach(s, req, self.world.now(), self.world.limits)
            self.world.persist(user, s, write)
            return answer

    async def read(self, user: str, epoch: str, after: int, limit: int = 500) -> c.ReadAnswer:
        async with self.world.turn(user, "read") as s:
            answer, write = svc.read(s, c.ReadRequest(epoch, after, limit))
            self.world.persist(user, s, write)
            return answer

    async def detach(self, user: str, conns: list[str]) -> None:
        async with self.world.turn(user, "detach") as s:
            self.world.persist(user, s, svc.detach(s, c.DetachRequest(conns)))

    async def ack(self, user: str, device: str, seq: int) -> c.AckAnswer:
        async with self.world.turn(user, "ack") as s:
            answer, write = svc.ack(s, c.AckRequest(device, seq), self.world.now(),
                                    self.world.limits)
            self.world.persist(user, s, write)
            return answer

    async def set_filters(self, user: str, filters: Filters) -> Filters:
        async with self.world.turn(user, "set_filters") as s:
            answer, write = svc.set_filters(s, c.FiltersMessage(filters))
            self.world.persist(user, s, write)
            return answer.filters

    async def heartbeat(self, lease_s: float, url: str) -> RegistryView:
        now = self.world.now()
        live = replica_core.heartbeat(self.world.registry, self.replica, now, lease_s, url)
        return RegistryView(live, replica_core.live_urls(self.world.registry, now))

    async def registry_snapshot(self) -> RegistryView:
        now = self.world.now()
        reg = self.world.registry
        return RegistryView(replica_core.snapshot(reg, now), replica_core.live_urls(reg, now))

    async def leave_registry(self) -> None:
        replica_core.leave(self.world.registry, self.replica, self.world.now())


class World:
    """What every replica of one test shares: the sessions, the store, the registry."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.sessions: dict[str, svc.Session] = {}
        self.store: dict[str, JsonObject] = {}  # user -> key -> JSON value
        self.registry = replica_core.Registry()
        self.faults: dict[tuple[str, str], int] = {}  # (user, method) -> calls left to fail
        self.calls: list[tuple[str, str]] = []  # (user, method), in order
        self._locks: dict[str, asyncio.Lock] = {}
        self.clock: float | None = None  # fixed time for tests that need one

    def now(self) -> float:
        return self.clock if self.clock is not None else time.time()

    def fail(self, user: str, method: str, times: int = 1) -> None:
        self.faults[(user, method)] = times

    def turn(self, user: str, method: str) -> _Turn:
        return _Turn(self, user, method)

    def persist(self, user: str, s: svc.Session, write: svc.Write | None) -> None:
        if write is None:
            return
        s.saved = True
        keys = self.store.setdefault(user, {})
        for op, key, value in storage.write_ops(s.meta, s.records, write.appended,
                                                write.deleted, write.order, write.held):
            if op == "delete":
                keys.pop(key, None)
            else:
                keys[key] = value

    def deactivate(self, user: str) -> None:
        """Like an idle actor: the next turn rebuilds the session from the store."""
        self.sessions.pop(user, None)

    def load(self, user: str) -> svc.Session:
        if user not in self.sessions:
            keys = self.store.get(user, {})
            stored = keys.get(storage.META_KEY)
            if stored is None:
                self.sessions[user] = svc.Session.fresh()
            else:
                meta = _map(stored, "stored meta")
                needed, buckets = storage.keys_needed(meta)
                chunks = {k: keys.get(storage.chunk_key(k)) for k in needed}
                order = {b: keys.get(storage.order_key(b)) for b in buckets}
                held = keys.get(storage.HELD_KEY) if storage.held_needed(meta) else None
                try:
                    m, records = storage.restore(meta, chunks, order, held)
                    self.sessions[user] = svc.Session(m, records)
                except storage.LogLost:
                    self.sessions[user] = svc.Session.fresh(
                        Filters.from_wire(_map(meta["filters"], "filters")))
        return self.sessions[user]


class _Turn:
    def __init__(self, world: World, user: str, method: str) -> None:
        self.world, self.user, self.method = world, user, method

    async def __aenter__(self) -> svc.Session:
        w = self.world
        await w._locks.setdefault(self.user, asyncio.Lock()).acquire()
        w.calls.append((self.user, self.method))
        left = w.faults.get((self.user, self.method), 0)
        if left > 0:
            w.faults[(self.user, self.method)] = left - 1
            w._locks[self.user].release()
            raise ActorUnavailable(f"injected fault: {self.user}.{self.method}")
        return w.load(self.user)

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None:
            self.world.deactivate(self.user)  # like the actor shell: memory may be ahead
        self.world._locks[self.user].release()
