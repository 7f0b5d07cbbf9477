"""Calls batched without waiting (Nagle): forwards to one replica, and topic messages into one
fan-out batch.

Items added in the same event-loop turn go out together; while a batch is in flight, new items
wait and leave together as soon as it completes. An idle channel adds no delay, a busy one sends
bigger batches. `send` answers one result per item, and each `add` returns a future for its own
item's result (or the batch's exception), so the topic message behind it is acknowledged only
once its own part of the batch landed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Outbox(Generic[T, R]):
    def __init__(self, send: Callable[[list[T]], Awaitable[Sequence[R]]]) -> None:
        self._send = send
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._scheduled = False
        self._in_flight = False
        self.batches = 0  # sent so far (tests and stats)

    def add(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(fut)
        if not self._scheduled and not self._in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        if not self._items:
            return
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        self._in_flight = True
        self.batches += 1
        task = asyncio.ensure_future(self._send(items))
        task.add_done_callback(lambda t: self._done(t, futures))

    def _done(self, task: asyncio.Future[Sequence[R]], futures: list[asyncio.Future[R]]) -> None:
        self._in_flight = False
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        results = task.result() if exc is None else []
        if exc is None and (not isinstance(results, Sequence) or len(results) != len(futures)):
            # Never leave a waiter hanging on a send that broke its contract.
            got = len(results) if isinstance(results, Sequence) else repr(results)[:40]
            exc = RuntimeError(f"send answered {got} results for {len(futures)} items")
        for i, fut in enumerate(futures):
            if fut.done():
                continue
            if exc is None:
                fut.set_result(results[i])
            else:
                fut.set_exception(exc)
        if self._items and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
