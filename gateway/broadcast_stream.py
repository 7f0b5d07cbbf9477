"""I/O around this replica's BroadcastFeed: learn the broadcast log's head, write ordered records
to every local connection (one frame encoded once for all), fill the replica's gaps and a lost
tail from the log, and start each connection's broadcast stream (resume from memory when the
ring covers it, else from the log, else resync_required).

Costs: one actor call per broadcast batch (the log's turn), one forward per other replica, and
none per connection; a read of the log for a gap, an old resume point, and once a heartbeat per
replica (the tail check).
"""

from __future__ import annotations

import asyncio
import logging
import time

from actors.session_core import EventRecord
from gateway import metrics, protocol, tracing
from gateway.actor_client import ActorUnavailable
from gateway.broadcast_feed import BroadcastFeed
from gateway.config import Settings
from gateway.connection import Connection
from gateway.sessions import SessionsPort
from vocab.ids import BROADCAST_LOG
from vocab.position import Position

log = logging.getLogger("gateway.broadcasts")
MAX_FILL_PAGES = 64  # one gap fill reads at most this many pages (the next fill goes on)
NO_EPOCH = "0"  # never a real epoch (those are 16 hex chars): the read answers the head


class BroadcastStream:
    def __init__(self, settings: Settings, sessions: SessionsPort,
                 conns: dict[str, Connection]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.conns = conns
        self.feed = BroadcastFeed()
        self._learning = asyncio.Lock()
        self._fill: asyncio.Task[None] | None = None
        self._conn_fills: dict[str, asyncio.Task[None]] = {}  # conn id -> its gap fill
        self.delivered = 0  # records written to connections (stats, tests)
        self.fills = 0  # log reads that found records this replica had missed

    # -- connections -------------------------------------------------------------------------
    async def start(self, conn: Connection, since: Position | None) -> None:
        """Set where the connection's broadcast stream starts, before its welcome. What to
        replay is kept on the connection: ring records of the epoch they belong to
        (conn.breplay), or None = read them from the log."""
        await self._ensure_known()
        feed = self.feed
        assert feed.epoch is not None
        if since is None:
            conn.bstart(feed.epoch, feed.head)  # a new device starts at the head
            conn.breplay = []
            return
        conn.bstart(since.epoch, since.seq)
        conn.breplay = feed.since(since)
        conn.breplay_epoch = since.epoch  # the epoch those ring records belong to

    async def replay(self, conn: Connection) -> None:
        """Send what the connection missed (after the user stream's replay)."""
        assert conn.bcursor is not None and conn.bepoch is not None
        epoch, records, conn.breplay = conn.breplay_epoch, conn.breplay, []
        if records is None:
            await self._fill_conn(conn)
        elif records and epoch is not None:
            # Ring records of the epoch the connection started in; if a live record of another
            # epoch has resynced it since, they no longer belong to its stream (_feed_conn).
            await self._feed_conn(conn, epoch, records)

    async def _fill_conn(self, conn: Connection) -> None:
        """Read the log after the connection's position, page by page, until it has no gap
        and is at the log's head; a position the log can't honour gets resync_required, then
        what this replica already passed after the new head (from the ring)."""
        for _ in range(MAX_FILL_PAGES):
            if conn.closed.is_set() or conn.bcursor is None or conn.bepoch is None:
                return
            asked_epoch, asked = conn.bepoch, conn.bcursor.last
            page = await self.sessions.read(BROADCAST_LOG, asked_epoch, asked)
            if conn.bepoch != asked_epoch:
                continue  # a live record moved it to another epoch meanwhile: ask in that one
            if page.resync:
                if page.epoch == conn.bepoch and conn.bcursor.last >= page.head:
                    return  # a live record got it there already: never move it back
                reason = "epoch_changed" if page.epoch != asked_epoch else "too_old"
                conn.bresync(page.epoch, page.head, reason)
                await self._refill_from_ring(conn)
                return
            await self._feed_conn(conn, page.epoch, page.events)
            if not page.events or (conn.bcursor.last >= page.head and not conn.has_bgap()):
                return

    async def _refill_from_ring(self, conn: Connection) -> None:
        """After a resync moved the connection's cursor: the records this replica has already
        passed beyond it (the reset dropped any it held) come again from the ring."""
        assert conn.bepoch is not None and conn.bcursor is not None
        again = self.feed.since(Position(conn.bepoch, conn.bcursor.last))
        if again:
            await self._feed_conn(conn, conn.bepoch, again)

    async def _feed_conn(self, conn: Connection, epoch: str, records: list[EventRecord]) -> None:
        for rec in records:
            if conn.bepoch != epoch:
                return  # resynced into another epoch meanwhile: these records are not its
            await conn.wait_room(self.settings.send_timeout_s)
            conn.offer_broadcast(epoch, rec)

    # -- live --------------------------------------------------------------------------------
    def deliver(self, epoch: str, record: EventRecord) -> None:
        """A recorded broadcast (from our own fan-out, a forward, or a log read)."""
        ready = self.feed.offer(epoch, record, time.monotonic())
        tp = tracing.active()  # a traced delivery's frames carry its context (docs/protocol.md)
        for rec in ready:
            shared = protocol.SharedFrame(tracing.tag(
                protocol.broadcast_frame(rec.type, rec.seq, rec.id, rec.data), tp))
            for conn in list(self.conns.values()):
                conn.offer_broadcast(epoch, rec, shared)
                if conn.has_bgap() and not conn.replaying:
                    self.fill_later(conn)
            self.delivered += 1
            metrics.published_lag(rec.ts)
        if self.feed.has_gap() and (self._fill is None or self._fill.done()):
            self._fill = asyncio.create_task(self._fill_gap())

    def fill_later(self, conn: Connection) -> None:
        """A connection whose broadcast cursor has a gap the replica's feed won't fill (the
        feed has passed those records: a corner of resume and resync): after the gap hold,
        read them for that connection alone."""
        if conn.conn_id in self._conn_fills:
            return

        async def fill() -> None:
            try:
                await asyncio.sleep(self.settings.gap_hold_s)
                if conn.has_bgap():
                    await self._fill_conn(conn)
            except ActorUnavailable as e:
                log.warning("broadcast gap fill for %s failed: %s", conn.conn_id, e)
                conn.fail(protocol.UNAVAILABLE)
            finally:
                self._conn_fills.pop(conn.conn_id, None)

        self._conn_fills[conn.conn_id] = asyncio.create_task(fill())

    async def _fill_gap(self) -> None:
        started = self.feed.gap_started
        wait = self.settings.gap_hold_s
        if started is not None:
            wait = max(0.0, started + self.settings.gap_hold_s - time.monotonic())
        await asyncio.sleep(wait)
        if self.feed.has_gap():
            await self._read_missing("gap fill")

    async def check(self) -> None:
        """Periodic (the replica's heartbeat): read what the log has after our head. A lost
        last forward, or one never sent to us, is filled within a heartbeat."""
        await self._read_missing("tail check")

    async def _read_missing(self, why: str) -> None:
        feed = self.feed
        for _ in range(MAX_FILL_PAGES):
            epoch = feed.epoch or NO_EPOCH
            try:
                page = await self.sessions.read(BROADCAST_LOG, epoch, feed.head)
            except ActorUnavailable as e:
                log.warning("broadcast %s failed: %s", why, e)
                return
            if (feed.epoch or NO_EPOCH) != epoch:
                return  # the feed moved to another epoch meanwhile: this answer is stale
            if page.resync:
                self._restart(page.epoch, page.head, why)
                return
            for rec in page.events:
                self.fills += 1
                self.deliver(page.epoch, rec)
            if not page.events or feed.head >= page.head:
                return

    def _restart(self, epoch: str, head: int, why: str) -> None:
        """The log can't continue from our head (state lost, or we fell behind retention):
        every connection is told to resync its broadcast stream."""
        reason = "epoch_changed" if epoch != self.feed.epoch else "too_old"
        log.warning("broadcast %s: the log can't continue from %s:%d (%s): resync",
                    why, self.feed.epoch, self.feed.head, reason)
        self.feed.restart(epoch, head)
        for conn in list(self.conns.values()):
            if conn.bcursor is not None:
                conn.bresync(epoch, head, reason)

    async def _ensure_known(self) -> None:
        if self.feed.known:
            return
        async with self._learning:  # one read for all the connections that wait on it
            if not self.feed.known:
                page = await self.sessions.read(BROADCAST_LOG, NO_EPOCH, 0, 1)
                if not self.feed.known:  # a live record may have taught it meanwhile
                    self.feed.learn(page.epoch, page.head)

    def close(self) -> None:
        for task in [self._fill, *self._conn_fills.values()]:
            if task is not None:
                task.cancel()
