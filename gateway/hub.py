"""This replica's connection table and the background work that keeps it honest.

- attach: register first (so live events are buffered), then ask the actor, replay, drain.
- gaps: hold briefly, then fill from the actor's log (or tell the client to resync).
- liveness: gateway/membership.py (one registry lease per replica).
- acks: coalesced per connection and flushed on a timer, not one actor call per ack; routes
  to connections this replica no longer has are detached in the same flush.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from actors.session_core import EventRecord, Filters, Liveness
from gateway import metrics, protocol, tracing
from gateway.actor_client import ActorUnavailable
from gateway.broadcast_stream import BroadcastStream
from gateway.config import Settings
from gateway.connection import Connection
from gateway.membership import Membership
from gateway.sessions import SessionsPort
from vocab.position import Position, ResumePoint

log = logging.getLogger("gateway.hub")
ACTOR_CONCURRENCY = 32  # periodic actor calls in flight at once


# The first replay page read in the attach turn: (event records, more pages follow).
ReplayPage = tuple[list[EventRecord], bool]


class AttachRefused(Exception):
    def __init__(self, code: protocol.CloseCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Hub:
    def __init__(self, settings: Settings, sessions: SessionsPort) -> None:
        self.settings = settings
        self.sessions = sessions
        self.conns: dict[str, Connection] = {}
        self.by_user: dict[str, set[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.draining = False
        self._all_gone = asyncio.Event()  # set whenever the table empties (drain waits on it)
        self.members = Membership(settings, sessions)
        self.broadcasts = BroadcastStream(settings, sessions, self.conns)
        self._stale: dict[str, set[str]] = {}  # user -> routed conn ids this replica lacks
        self._tail_timers: dict[str, asyncio.TimerHandle] = {}
        self.tail_fills = 0  # lost tails found by the tail check (stats, tests)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._every(self.settings.ack_interval_s, self.flush_acks)),
            asyncio.create_task(self._every(self.settings.lease_s / 3, self.heartbeat, now=True)),
        ]

    async def stop(self) -> None:
        self.broadcasts.close()
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _every(self, period: float, fn: Any, now: bool = False) -> None:
        if not now:
            await asyncio.sleep(period)
        while True:
            try:
                await fn()
            except Exception:
                log.exception("periodic %s failed", getattr(fn, "__name__", fn))
            await asyncio.sleep(period)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections ---------------------------------------------------------------------------
    def new_connection(
        self, user: str, device: str, transport: str, expires_at: float
    ) -> Connection:
        conn = Connection(
            conn_id=f"{self.settings.replica_id}.{uuid.uuid4().hex[:12]}",
            user=user,
            device=device,
            transport=transport,
            queue_max=self.settings.send_queue_max,
            max_held=1024,
            expires_at=expires_at,
        )
        self.conns[conn.conn_id] = conn
        self.by_user.setdefault(user, set()).add(conn.conn_id)
        metrics.connected(transport)
        return conn

    async def register(self, conn: Connection, since: str | None) -> ReplayPage:
        """Register at the actor: it records the connection and reads the first replay page in
        one turn, and live events that race it wait in conn.early/the cursor, so the seam is
        exact. The broadcast stream's start is set before the welcome too. The replay itself is
        sent by replay(), paced by the client."""
        point = ResumePoint.parse(since) if since else None
        try:
            res = await self.sessions.attach(
                conn.user, conn.conn_id, conn.device,
                str(point.user) if point else None, self.liveness
            )
            # Before the next await: a user-scope subscribe through this replica from now on
            # (set_user_filter) must not be overwritten by this older answer.
            conn.user_filter = None if res.filters.is_empty() else res.filters
            if res.outcome != "too_many_connections":
                await self.broadcasts.start(conn, point.broadcast if point else None)
        except ActorUnavailable as e:
            raise AttachRefused(protocol.UNAVAILABLE, str(e)) from e
        if res.outcome == "too_many_connections":
            raise AttachRefused(protocol.TOO_MANY_CONNECTIONS, "connection limit for this user")
        metrics.attached(since, res.resumed, res.reason)
        epoch, head = res.epoch, res.head
        start = head if res.outcome == "resync" else res.start
        assert conn.bepoch is not None and conn.bcursor is not None
        bpos = Position(conn.bepoch, conn.bcursor.last)
        conn.push(
            protocol.welcome(conn.conn_id, epoch, start, self.settings.heartbeat_s,
                             res.outcome != "resync" and res.resumed,
                             (bpos.epoch, bpos.seq)),
            str(ResumePoint(Position(epoch, start), bpos)),
        )
        if res.outcome == "resync":
            conn.resync(epoch, head, res.reason)
            return [], False
        conn.start(epoch, res.start)
        return res.events, res.more

    async def replay(self, conn: Connection, page: ReplayPage) -> None:
        """Send the replay that register() began, then the live events that raced it."""
        events, more = page
        try:
            if conn.cursor is not None and conn.epoch is not None:
                await self._replay(conn, events, more)
            if not conn.closed.is_set():
                await self.broadcasts.replay(conn)
        except AttachRefused as e:
            conn.fail(e.code)
            return
        except ActorUnavailable as e:
            log.warning("broadcast replay for %s failed: %s", conn.conn_id, e)
            conn.fail(protocol.UNAVAILABLE)
            return
        finally:
            conn.replaying = False
        conn.drain_early()
        self._check_gap(conn)
        if conn.has_bgap():  # e.g. a long replay's last page was cut: don't wait for the next
            self.broadcasts.fill_later(conn)

    async def _replay(self, conn: Connection, events: list[EventRecord], more: bool) -> None:
        assert conn.epoch is not None and conn.cursor is not None
        await self._feed(conn, events)
        while more and not conn.closed.is_set():
            try:
                page = await self.sessions.read(conn.user, conn.epoch, conn.cursor.last)
            except ActorUnavailable as e:
                raise AttachRefused(protocol.UNAVAILABLE, str(e)) from e
            if page.resync:
                conn.resync(page.epoch, page.head, "too_old")
                return
            await self._feed(conn, page.events)
            more = conn.cursor.last < page.head and bool(page.events)

    async def _feed(self, conn: Connection, records: list[EventRecord]) -> None:
        """Offer log records to a connection, paced by its writer (never overflows the queue)."""
        for rec in records:
            await conn.wait_room(self.settings.send_timeout_s)
            if conn.epoch is not None:
                conn.offer(conn.epoch, rec)

    async def remove(self, conn: Connection) -> None:
        """Forget locally, flush its ack and tell the actor (best effort: the lease covers us)."""
        if self.conns.pop(conn.conn_id, None) is None:
            return
        metrics.disconnected(conn)
        if not self.conns:
            self._all_gone.set()
        timer = self._tail_timers.pop(conn.conn_id, None)
        if timer is not None:
            timer.cancel()
        for task in (conn.gap_task, conn.background):
            if task is not None:
                task.cancel()
        ids = self.by_user.get(conn.user, set())
        ids.discard(conn.conn_id)
        if not ids:
            self.by_user.pop(conn.user, None)
        try:
            await self._flush_ack(conn)
            await self.sessions.detach(conn.user, [conn.conn_id])
        except ActorUnavailable as e:
            log.info("detach of %s left to lease expiry: %s", conn.conn_id, e)

    def set_user_filter(self, user: str, filters: Filters | None) -> None:
        """New user filters, stored at the actor through this replica: the user's connections
        here filter broadcasts by them from now on. (Connections on other replicas learn them
        when they attach again; the user log is filtered by the actor for all of them.)"""
        for cid in self.by_user.get(user, ()):
            self.conns[cid].user_filter = filters

    # -- live events ---------------------------------------------------------------------------
    def deliver_local(self, user: str, conn_ids: list[str], epoch: str, item: EventRecord) -> None:
        # One frame object for all of the user's connections here: encoded once per encoding.
        # A traced delivery's frame always is one: it carries the trace context to the writer.
        tp = tracing.active()
        shared = protocol.SharedFrame(tracing.tag(
            protocol.event_frame(item.type, item.seq, item.id, item.data), tp
        )) if len(conn_ids) > 1 or tp is not None else None
        for cid in conn_ids:
            conn = self.conns.get(cid)
            if conn is None or conn.user != user:
                # Gone (it resumes from the log) or not this user's: never cross users. A
                # route to a connection of ours that no longer exists is detached at the actor.
                if conn is None and cid.startswith(f"{self.settings.replica_id}."):
                    self._stale.setdefault(user, set()).add(cid)
                continue
            conn.offer(epoch, item, shared)
            metrics.published_lag(item.ts)
            self._check_gap(conn)
            self._watch_tail(conn)

    def _check_gap(self, conn: Connection) -> None:
        if conn.replaying:
            return  # the replay fills it
        if conn.has_gap() and (conn.gap_task is None or conn.gap_task.done()):
            conn.gap_task = asyncio.create_task(self._fill_gap(conn))

    async def _fill_gap(self, conn: Connection) -> None:
        # Out-of-order arrivals usually heal within the hold, counted from when the gap began
        # (the cursor knows); only then ask the actor.
        started = conn.cursor.gap_started if conn.cursor is not None else None
        wait = self.settings.gap_hold_s
        if started is not None:
            wait = max(0.0, started + self.settings.gap_hold_s - time.monotonic())
        await asyncio.sleep(wait)
        if not conn.has_gap():
            return
        await self._read_missing(conn, "gap fill")

    async def _read_missing(self, conn: Connection, why: str) -> None:
        """Read what the log has after the connection's position and feed it (a gap, or a lost
        tail); a position the log can't honour gets resync_required."""
        if conn.closed.is_set() or conn.cursor is None or conn.epoch is None:
            return
        try:
            page = await self.sessions.read(conn.user, conn.epoch, conn.cursor.last)
        except ActorUnavailable as e:
            log.warning("%s for %s failed: %s", why, conn.conn_id, e)
            conn.fail(protocol.UNAVAILABLE)
            return
        if page.resync:
            conn.resync(page.epoch, page.head, "too_old")
            return
        if page.events:
            self.tail_fills += why == "tail check"
            await self._feed(conn, page.events)
        self._check_gap(conn)

    def _watch_tail(self, conn: Connection) -> None:
        """A connection that just got an event is checked once, after it has been quiet for
        tail_check_s, against the log's head: a lost last forward is filled instead of waiting
        for the user's next event. Idle connections cost nothing; busy ones one read per quiet."""
        if self.settings.tail_check_s <= 0:
            return
        old = self._tail_timers.pop(conn.conn_id, None)
        if old is not None:
            old.cancel()
        self._tail_timers[conn.conn_id] = asyncio.get_running_loop().call_later(
            self.settings.tail_check_s, self._tail_due, conn
        )

    def _tail_due(self, conn: Connection) -> None:
        self._tail_timers.pop(conn.conn_id, None)
        if not conn.closed.is_set() and not conn.replaying:
            self._spawn(self._read_missing(conn, "tail check"))

    # -- periodic ------------------------------------------------------------------------------
    async def _flush_ack(self, conn: Connection) -> None:
        if conn.pending_ack > conn.acked:
            seq = conn.pending_ack
            await self.sessions.ack(conn.user, conn.device, seq)
            conn.acked = max(conn.acked, seq)

    async def flush_acks(self) -> None:
        """Coalesced acks and stale-route detaches, concurrently with a bound."""
        sem = asyncio.Semaphore(ACTOR_CONCURRENCY)

        async def ack(conn: Connection) -> None:
            async with sem:
                try:
                    await self._flush_ack(conn)
                except ActorUnavailable as e:
                    log.warning("ack flush for %s failed (retried next tick): %s", conn.conn_id, e)

        async def detach(user: str, cids: set[str]) -> None:
            async with sem:
                try:
                    await self.sessions.detach(user, sorted(cids))
                except ActorUnavailable as e:
                    log.info("stale routes of %s stay until the next try: %s", user, e)
                    self._stale.setdefault(user, set()).update(cids)

        stale, self._stale = self._stale, {}
        await asyncio.gather(
            *(ack(c) for c in list(self.conns.values()) if c.pending_ack > c.acked),
            *(detach(u, cids) for u, cids in stale.items()),
        )

    async def heartbeat(self) -> None:
        """Renew this replica's lease; after a lapse, attach every connection again from where
        it is (nothing is skipped, the cursor dedups). With connections
        here, also compare the broadcast feed with the log's head (one read per replica): a
        broadcast whose forward never came (we were new to the sender's snapshot) is filled."""
        if self.conns and self.broadcasts.feed.known:
            self._spawn(self.broadcasts.check())
        if await self.members.heartbeat():
            log.warning("registry lease lapsed: re-attaching %d connections", len(self.conns))
            for conn in list(self.conns.values()):
                if conn.cursor is not None:
                    self._spawn(self._reattach(conn))

    @property
    def liveness(self) -> Liveness | None:
        return self.members.liveness

    async def _reattach(self, conn: Connection) -> None:
        assert conn.cursor is not None
        try:
            await self.attach_again(conn)
        except AttachRefused as e:
            conn.fail(e.code)

    async def attach_again(self, conn: Connection) -> None:
        assert conn.cursor is not None and conn.epoch is not None
        res = await self.sessions.attach(
            conn.user, conn.conn_id, conn.device, f"{conn.epoch}:{conn.cursor.last}",
            self.liveness,
        )
        if res.outcome == "too_many_connections":
            raise AttachRefused(protocol.TOO_MANY_CONNECTIONS, "connection limit for this user")
        if res.outcome == "resync":
            conn.resync(res.epoch, res.head, res.reason)
            return
        await self._replay(conn, res.events, res.more)

    async def drain(self, code: protocol.CloseCode) -> None:
        """Graceful shutdown: close every connection with a reconnect code, then detach."""
        self.draining = True
        conns = list(self.conns.values())
        for conn in conns:
            conn.fail(code)
        if self.conns:
            self._all_gone.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), 5.0)
        await asyncio.gather(
            *(self.remove(c) for c in list(self.conns.values())), return_exceptions=True
        )
        await self.members.leave()
