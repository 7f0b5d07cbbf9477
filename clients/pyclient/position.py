"""Resume position tracking, duplicate dropping and ack coalescing. Pure: the caller passes time."""

from __future__ import annotations

from vocab.position import Position, ResumePoint

__all__ = ["Position", "PositionTracker", "ResumePoint", "StreamPosition"]

class StreamPosition:
    """Where one stream stands: set by welcomes, advanced by processed events, reset by resync."""

    def __init__(self, position: Position | None = None) -> None:
        self.position = position

    def welcome(self, epoch: str, seq: int) -> None:
        """The stream continues from epoch:seq. In the same epoch never move backwards: a
        WebSocket welcomed while SSE was still delivering may start behind what we processed."""
        p = self.position
        if p is None or p.epoch != epoch or seq > p.seq:
            self.position = Position(epoch, seq)

    def is_new(self, seq: int) -> bool:
        """False for a duplicate (seq at or below the position). Events only arrive after a
        welcome set the epoch, so the epoch of an event is the position's epoch."""
        p = self.position
        return p is None or seq > p.seq

    def processed(self, seq: int) -> None:
        p = self.position
        if p is not None and seq > p.seq:
            self.position = Position(p.epoch, seq)

    def resync(self, epoch: str, seq: int) -> None:
        """After the app reloaded its state: continue from exactly there, even backwards."""
        self.position = Position(epoch, seq)


class PositionTracker:
    """Two streams: the user's own (``user``, acked) and the shared broadcast stream
    (``broadcast``, never acked: the server keeps no per-device cursor for it)."""

    def __init__(self, initial: ResumePoint | None = None) -> None:
        self.user = StreamPosition(initial.user if initial is not None else None)
        self.broadcast = StreamPosition(initial.broadcast if initial is not None else None)

    @property
    def position(self) -> Position | None:
        return self.user.position

    @property
    def bposition(self) -> Position | None:
        return self.broadcast.position

    def resume_point(self) -> str | None:
        """The `since` to resume from: ``epoch:seq`` or ``epoch:seq,bepoch:bseq``."""
        if self.position is None:
            return None
        return str(ResumePoint(self.position, self.bposition))


class AckCoalescer:
    """At most one ack per ``interval``, always for the highest processed seq."""

    def __init__(self, interval: float) -> None:
        if interval < 0:
            raise ValueError("ack interval must be >= 0")
        self.interval = interval
        self.pending: int | None = None
        self.last_sent_at: float | None = None

    def note(self, seq: int) -> None:
        # The latest, not max(): after a resync into a new epoch the seq may go down.
        self.pending = seq

    def delay(self, now: float) -> float:
        """Seconds until an ack may be sent (0: now)."""
        if self.last_sent_at is None:
            return 0.0
        return max(0.0, self.last_sent_at + self.interval - now)

    def take(self, now: float) -> int | None:
        """The seq to send now, or None (nothing new, or too soon after the last ack)."""
        if self.pending is None or self.delay(now) > 0:
            return None
        return self._take(now)

    def flush(self, now: float) -> int | None:
        """On close: whatever is pending, regardless of the interval."""
        return None if self.pending is None else self._take(now)

    def _take(self, now: float) -> int:
        assert self.pending is not None
        seq, self.pending = self.pending, None
        self.last_sent_at = now
        return seq

    def failed(self, seq: int) -> None:
        """The ack did not get out: send it again later unless something newer is pending."""
        if self.pending is None:
            self.pending = seq
