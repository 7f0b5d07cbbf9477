"""The shared broadcast stream as one replica sees it: pure ordering and a ring of recent records.

Events without an audience are recorded once, in the broadcast log (a UserSession actor under
vocab.ids.BROADCAST_LOG), not once per user. The replica that took the topic message writes them
to its connections and forwards them once to every other replica. Each replica orders what
arrives here (one SeqCursor for the replica, not one per connection) and keeps the last `ring`
records, so a client resuming a short absence is served from memory: no store round trip.
"""

from __future__ import annotations

from collections import deque

from actors.session_core import EventRecord
from gateway.ordering import SeqCursor
from vocab.position import Position

RING = 1024  # recent broadcasts kept per replica (resume within them costs no actor call)


class BroadcastFeed:
    def __init__(self, ring: int = RING, max_held: int = 1024) -> None:
        self.epoch: str | None = None
        self._cursor: SeqCursor[EventRecord] = SeqCursor(0, max_held=max_held)
        self._ring: deque[EventRecord] = deque(maxlen=ring)

    @property
    def known(self) -> bool:
        return self.epoch is not None

    @property
    def head(self) -> int:
        """Highest seq this replica has handed to its connections, in order."""
        return self._cursor.last

    @property
    def gap_started(self) -> float | None:
        return self._cursor.gap_started

    def has_gap(self) -> bool:
        return self._cursor.gap() is not None

    def learn(self, epoch: str, head: int) -> None:
        """What the log says (a read). Within the feed's epoch a head alone proves nothing
        (records come through offer()); another epoch starts over from it."""
        if epoch != self.epoch:
            self.restart(epoch, head)

    def restart(self, epoch: str, head: int) -> None:
        """Continue from (epoch, head) and forget the rest (the log can't fill our gap)."""
        self.epoch = epoch
        self._cursor.reset(head)
        self._ring.clear()

    def offer(self, epoch: str, record: EventRecord, now: float) -> list[EventRecord]:
        """One record, live or read from the log: the records now in order. A record of
        another epoch starts the feed over from just before it (each connection's own cursor
        sees the new epoch and tells its client to resync)."""
        if epoch != self.epoch:
            self.restart(epoch, record.seq - 1)
        # Beyond max_held waiting records the cursor drops new ones: the gap fill reads the log
        # until it reaches the log's head, which brings them back in order.
        ready = self._cursor.offer(record.seq, record, now)
        self._ring.extend(ready)
        return ready

    def since(self, pos: Position) -> list[EventRecord] | None:
        """Records after `pos` from memory, or None when memory does not cover them (another
        epoch, or older than the ring): the caller reads the log instead."""
        if pos.epoch != self.epoch:
            return None
        if pos.seq >= self.head:
            return []
        first = self._ring[0].seq if self._ring else self.head + 1
        if pos.seq + 1 < first:
            return None
        return [r for r in self._ring if r.seq > pos.seq]
