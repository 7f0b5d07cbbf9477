"""One pending release turn per user on this replica, for events the user's actor holds.

The actor keeps an event whose earlier version is missing (actors/task_order.py) and records it in
a later turn, once the gap fills or the hold is over. So that it never waits for another publish,
a deliver answer that still holds events carries `release_in`, and the replica that got it
schedules ONE `deliver` with no events for that user `release_in` + MARGIN_S later. One timer per
user (an earlier due time replaces a later one), at most `limit` per replica (beyond: none is
scheduled, and the next deliver for the user releases), and none once closed (draining).

If this replica dies before its timer fires, the held events stay in the actor's state and the
next deliver for the user, from any replica, releases them (docs/protocol.md, Producers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("gateway.release")

MARGIN_S = 0.05  # after the actor's due time: clocks and the call itself (early is re-armed)
LIMIT = 10_000  # pending timers per replica


class ReleaseTimers:
    def __init__(self, fire: Callable[[str], Awaitable[None]], limit: int = LIMIT,
                 margin_s: float = MARGIN_S) -> None:
        self._fire = fire
        self._limit = limit
        self._margin_s = margin_s
        self._due: dict[str, tuple[float, asyncio.TimerHandle]] = {}  # user -> (loop time, timer)
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.fired = 0  # release turns started (stats, tests)
        self.skipped = 0  # not scheduled because `limit` timers were pending

    def __len__(self) -> int:
        return len(self._due)

    def arm(self, user: str, delay_s: float) -> None:
        """Schedule a release turn for `user` in `delay_s` (+ margin), unless one is due sooner."""
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + max(delay_s, 0.0) + self._margin_s
        current = self._due.get(user)
        if current is not None:
            if current[0] <= due:
                return
            current[1].cancel()
        elif len(self._due) >= self._limit:
            self.skipped += 1
            log.warning("%d release timers pending: none for %s (its next deliver releases)",
                        len(self._due), user)
            return
        self._due[user] = (due, loop.call_at(due, self._run, user))

    def _run(self, user: str) -> None:
        self._due.pop(user, None)
        if self.closed:
            return
        self.fired += 1
        task = asyncio.ensure_future(self._fire(user))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("release turn failed", exc_info=exc)

    @property
    def busy(self) -> bool:
        """A timer is pending or a release turn runs."""
        return bool(self._due or self._tasks)

    def close(self) -> None:
        """Cancel every pending timer and running release turn; schedule none from now on."""
        self.closed = True
        for _, handle in self._due.values():
            handle.cancel()
        self._due.clear()
        for task in self._tasks:
            task.cancel()
