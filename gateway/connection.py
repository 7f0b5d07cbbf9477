"""One client connection, whatever its transport: ordering, filtering and the bounded send queue.

Live events may reach a connection from two paths (this replica's own fan-out and forwards from
other replicas) and out of order. The SeqCursor turns them back into a gap-free, duplicate-free
stream; the per-connection filter is applied only after ordering, so filtering never looks like
loss to the cursor.
"""

import asyncio
import time
from collections.abc import Callable

from actors.session_core import EventRecord, Filters
from gateway import metrics, protocol
from gateway.ordering import SeqCursor
from gateway.ratelimit import TokenBucket
from vocab.json_types import JsonObject

# Queue entries: (frame, SSE id or None). SSE uses the id as the resume position.
Outgoing = tuple[protocol.Frame, str | None]
# What the cursor orders: the record, and its frame when shared with the user's other connections.
Item = tuple[EventRecord, protocol.SharedFrame | None]


class Connection:
    def __init__(
        self,
        conn_id: str,
        user: str,
        device: str,
        transport: str,
        queue_max: int,
        max_held: int,
        expires_at: float,
    ) -> None:
        self.conn_id = conn_id
        self.user = user
        self.device = device
        self.transport = transport
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=queue_max)
        self.max_held = max_held
        self.cursor: SeqCursor[Item] | None = None
        self.epoch: str | None = None
        self.early: list[tuple[str, Item]] = []  # live events that beat the attach answer
        # The shared broadcast stream (gateway/broadcast_feed.py): its own epoch and cursor.
        self.bepoch: str | None = None
        self.bcursor: SeqCursor[Item] | None = None
        self.bearly: list[tuple[str, Item]] = []
        self.breplay: list[EventRecord] | None = []  # what to replay; None = read the log
        self.breplay_epoch: str | None = None  # the epoch of the records in breplay
        self.conn_filter: Filters | None = None
        # The user's persisted filters: the actor applies them to the user log, this
        # connection applies them to broadcasts (from the attach answer, and user-scope
        # subscribes made through this replica).
        self.user_filter: Filters | None = None
        self.last_seen = time.monotonic()
        self.expires_at = expires_at
        self.pending_ack = 0
        self.acked = 0
        self.closed = asyncio.Event()
        self.close_code: protocol.CloseCode | None = None
        self.gap_task: asyncio.Task[None] | None = None
        self.background: asyncio.Task[None] | None = None  # e.g. an SSE replay
        self.replaying = True  # until the first replay is done: gaps are the replay's job
        self._room = asyncio.Event()  # set by the writer whenever it takes a frame
        self.batching = False  # WS: queued event frames may leave as one `batch` message
        self.bucket: TokenBucket | None = None  # SSE POST rate limit (WS keeps its own)

    def describe(self) -> JsonObject:
        return {
            "conn_id": self.conn_id, "user": self.user, "device": self.device,
            "transport": self.transport, "epoch": self.epoch,
            "last_seq": self.cursor.last if self.cursor else None,
            "held": self.cursor.held if self.cursor else 0, "queued": self.queue.qsize(),
            "closed": self.closed.is_set(),
            "close_code": self.close_code.code if self.close_code else None,
        }

    # -- sending -------------------------------------------------------------------------
    def push(self, frame: protocol.Frame, sse_id: str | None = None) -> None:
        if self.closed.is_set():
            return
        try:
            self.queue.put_nowait((frame, sse_id))
        except asyncio.QueueFull:
            # It can't keep up; the log has everything, so close and let it resume.
            self.fail(protocol.SLOW_CONSUMER)

    async def next_out(self) -> Outgoing:
        """For the transport's writer: the next frame to send."""
        item = await self.queue.get()
        self._room.set()
        return item

    def next_nowait(self) -> Outgoing | None:
        """The next frame if one is queued, without waiting."""
        try:
            item = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        self._room.set()
        return item

    async def wait_room(self, stall_s: float) -> None:
        """Replays are paced by the writer instead of overflowing the queue: wait while the
        queue is over half full. A writer that makes no progress for `stall_s` is a slow
        consumer."""
        while self.queue.qsize() > self.queue.maxsize // 2 and not self.closed.is_set():
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), stall_s)
            except TimeoutError:
                self.fail(protocol.SLOW_CONSUMER)

    def fail(self, code: protocol.CloseCode) -> None:
        if not self.closed.is_set():
            self.close_code = code
            self.closed.set()

    def position(self, seq: int) -> str:
        """The resume point after user event `seq` (vocab.position.ResumePoint text)."""
        if self.bepoch is None or self.bcursor is None:
            return f"{self.epoch}:{seq}"
        return f"{self.epoch}:{seq},{self.bepoch}:{self.bcursor.last}"

    def bposition(self, bseq: int) -> str:
        """The resume point after broadcast `bseq`."""
        last = self.cursor.last if self.cursor is not None else 0
        return f"{self.epoch}:{last},{self.bepoch}:{bseq}"

    # -- ordering --------------------------------------------------------------------------
    def start(self, epoch: str, start_seq: int) -> None:
        self.epoch = epoch
        self.cursor = SeqCursor(start_seq, max_held=self.max_held)

    def offer(
        self, epoch: str, item: EventRecord, shared: protocol.SharedFrame | None = None
    ) -> None:
        """Feed one event (replayed or live). Returns nothing: frames go to the queue. `shared`
        is the event's frame when other connections write it too (encoded once for all)."""
        if self.closed.is_set():
            return
        if self.cursor is None:
            self._hold_early(self.early, epoch, item, shared)
            return
        if epoch != self.epoch:
            # The user's log restarted (state lost): say so instead of pretending continuity.
            self.resync(epoch, item.seq - 1, "epoch_changed")
        self._release(self.cursor, item, shared, self._wants_user, _user_frame, self.position)

    def _hold_early(self, early: list[tuple[str, Item]], epoch: str, item: EventRecord,
                    shared: protocol.SharedFrame | None) -> None:
        early.append((epoch, (item, shared)))
        if len(early) > self.max_held:
            self.fail(protocol.SLOW_CONSUMER)

    def _release(
        self, cursor: SeqCursor[Item], item: EventRecord, shared: protocol.SharedFrame | None,
        wants: Callable[[EventRecord], bool], frame_of: Callable[[EventRecord], protocol.Frame],
        position_of: Callable[[int], str],
    ) -> None:
        """Order one record by its stream's cursor; push what is ready and wanted."""
        for ready, frame in cursor.offer(item.seq, (item, shared), time.monotonic()):
            if wants(ready):
                self.push(frame or frame_of(ready), position_of(ready.seq))
        if cursor.overflowed:
            self.fail(protocol.SLOW_CONSUMER)

    def _wants_user(self, r: EventRecord) -> bool:
        # The user's own filters were applied by the actor when it recorded the event.
        return self.conn_filter is None or self.conn_filter.matches(r.type, r.task_id, r.list_id)

    def drain_early(self) -> None:
        early, self.early = self.early, []
        for epoch, (item, shared) in early:
            self.offer(epoch, item, shared)
        bearly, self.bearly = self.bearly, []
        for epoch, (item, shared) in bearly:
            self.offer_broadcast(epoch, item, shared)

    # -- the broadcast stream -----------------------------------------------------------------
    def bstart(self, epoch: str, start_seq: int) -> None:
        self.bepoch = epoch
        self.bcursor = SeqCursor(start_seq, max_held=self.max_held)

    def offer_broadcast(
        self, epoch: str, item: EventRecord, shared: protocol.SharedFrame | None = None
    ) -> None:
        """Like offer(), for the broadcast stream: ordered by its own cursor, filtered by the
        connection's and the user's filters."""
        if self.closed.is_set():
            return
        if self.bcursor is None or self.cursor is None:  # nothing before the welcome
            self._hold_early(self.bearly, epoch, item, shared)
            return
        if epoch != self.bepoch:
            self.bresync(epoch, item.seq - 1, "epoch_changed")
        self._release(self.bcursor, item, shared, self._wants, _broadcast_frame, self.bposition)

    def _wants(self, r: EventRecord) -> bool:
        return all(f is None or f.matches(r.type, r.task_id, r.list_id)
                   for f in (self.conn_filter, self.user_filter))

    def bresync(self, epoch: str, head: int, reason: str) -> None:
        self.bepoch = epoch
        if self.bcursor is None:
            self.bcursor = SeqCursor(head, max_held=self.max_held)
        else:
            self.bcursor.reset(head)
        metrics.resync(reason)
        self.push(protocol.resync_required(epoch, head, reason, broadcast=True),
                  self.bposition(head))

    def has_bgap(self) -> bool:
        return self.bcursor is not None and self.bcursor.gap() is not None

    def resync(self, epoch: str, head: int, reason: str) -> None:
        self.epoch = epoch
        if self.cursor is None:
            self.cursor = SeqCursor(head, max_held=self.max_held)
        else:
            self.cursor.reset(head)
        metrics.resync(reason)
        self.push(protocol.resync_required(epoch, head, reason), self.position(head))

    def has_gap(self) -> bool:
        return self.cursor is not None and self.cursor.gap() is not None

    def note_ack(self, seq: int) -> None:
        # A client can't ack beyond what it was sent.
        last = self.cursor.last if self.cursor is not None else 0
        self.pending_ack = max(self.pending_ack, min(seq, last))


def _user_frame(r: EventRecord) -> protocol.Frame:
    return protocol.event_frame(r.type, r.seq, r.id, r.data)


def _broadcast_frame(r: EventRecord) -> protocol.Frame:
    return protocol.broadcast_frame(r.type, r.seq, r.id, r.data)
