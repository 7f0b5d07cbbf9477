"""Per-connection in-order delivery: turns events that arrive out of order or twice (two delivery
paths) into a gap-free, duplicate-free stream. Pure: the caller passes the time in."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class SeqCursor(Generic[T]):
    def __init__(self, last: int, max_held: int = 1024) -> None:
        if max_held < 0:
            raise ValueError("max_held must be >= 0")
        self._max_held = max_held
        self.reset(last)

    @property
    def last(self) -> int:
        """Highest seq delivered: everything up to it has been handed out exactly once."""
        return self._last

    @property
    def gap_started(self) -> float | None:
        """When the current gap began: the arrival of the oldest held item (each held item
        proves that everything between last and it is missing)."""
        return self._gap_started

    @property
    def overflowed(self) -> bool:
        """More than max_held items were waiting. Sticky until reset(): the caller must close or
        resync. Items beyond the bound are not kept, so memory stays bounded meanwhile."""
        return self._overflowed

    def reset(self, last: int) -> None:
        self._last = last
        self._held: dict[int, tuple[T, float]] = {}
        self._gap_started: float | None = None
        self._overflowed = False

    def offer(self, seq: int, item: T, now: float) -> list[T]:
        """Return the items deliverable now, in seq order (possibly none)."""
        if seq <= self._last or seq in self._held:
            return []  # duplicate
        if seq != self._last + 1:
            if len(self._held) >= self._max_held:
                self._overflowed = True
                return []
            self._held[seq] = (item, now)
            if self._gap_started is None or now < self._gap_started:
                self._gap_started = now
            return []
        out = [item]
        self._last = seq
        while (nxt := self._held.pop(self._last + 1, None)) is not None:
            out.append(nxt[0])
            self._last += 1
        if len(out) > 1:
            # Released items may have been the oldest; the remaining gap dates from the rest.
            self._gap_started = min((t for _, t in self._held.values()), default=None)
        return out

    def gap(self) -> tuple[int, int] | None:
        """Missing seqs (inclusive) before the first held item, or None when nothing waits."""
        if not self._held:
            return None
        return self._last + 1, min(self._held) - 1

    @property
    def held(self) -> int:
        return len(self._held)
