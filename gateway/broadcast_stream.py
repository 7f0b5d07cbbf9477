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
        self.delivered = 0  # records written to connections (stats, tests)
        self.fills = 0  # log reads that found records this replica had missed

    # -- connections -------------------------------------------------------------------------
    async def start(self, conn: Connection, since: Position | None) -> None:
        """Set where the connection's broadcast stream starts, before its welcome. Records to
        replay are kept on the connection (conn.breplay; None = read them from the log)."""
        await self._ensure_known()
        feed = self.feed
        assert feed.epoch is not None
        if since is None:
            conn.bstart(feed.epoch, feed.head)  # a new device starts at the head
            conn.breplay = []
            return
        conn.bstart(since.epoch, since.seq)
        conn.breplay = feed.since(since)

    async def replay(self, conn: Connection) -> None:
        """Send what the connection missed (after the user stream's replay)."""
        assert conn.bcursor is not None and conn.bepoch is not None
        records, conn.breplay = conn.breplay, []
        if records is not None:
            await self._feed_conn(conn, conn.bepoch, records)
            return
        for _ in range(MAX_FILL_PAGES):  # a resume read from the log, page by page
            page = await self.sessions.read(BROADCAST_LOG, conn.bepoch, conn.bcursor.last)
            if page.resync:
                reason = "epoch_changed" if page.epoch != conn.bepoch else "too_old"
                conn.bresync(page.epoch, page.head, reason)
                return
            await self._feed_conn(conn, page.epoch, page.events)
            if not page.events or conn.bcursor.last >= page.head or conn.closed.is_set():
                return

    async def _feed_conn(self, conn: Connection, epoch: str, records: list[EventRecord]) -> None:
        for rec in records:
            await conn.wait_room(self.settings.send_timeout_s)
            conn.offer_broadcast(epoch, rec)

    # -- live --------------------------------------------------------------------------------
    def deliver(self, epoch: str, record: EventRecord) -> None:
        """A recorded broadcast (from our own fan-out, a forward, or a log read)."""
        _, ready = self.feed.offer(epoch, record, time.monotonic())
        tp = tracing.active()  # a traced delivery's frames carry its context (docs/protocol.md)
        for rec in ready:
            shared = protocol.SharedFrame(tracing.tag(
                protocol.broadcast_frame(rec.type, rec.seq, rec.id, rec.data), tp))
            for conn in list(self.conns.values()):
                conn.offer_broadcast(epoch, rec, shared)
            self.delivered += 1
            metrics.published_lag(rec.ts)
        if self.feed.has_gap() and (self._fill is None or self._fill.done()):
            self._fill = asyncio.create_task(self._fill_gap())

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
                self.feed.learn(page.epoch, page.head)

    def close(self) -> None:
        if self._fill is not None:
            self._fill.cancel()
