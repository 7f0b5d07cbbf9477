"""Handler registries (sync or async callables) and the bounded event stream for simple
consumers."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("clients.pyclient")

F = TypeVar("F", bound=Callable[..., Any])
Frame = dict[str, Any]


class Registry(Generic[F]):
    """Handlers keyed by name; each handler is awaited in turn so events stay in order."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[F]] = {}

    def add(self, key: str, fn: F) -> Callable[[], None]:
        if not callable(fn):
            raise TypeError("handler must be callable")
        self._by_key.setdefault(key, []).append(fn)

        def remove() -> None:
            fns = self._by_key.get(key, [])
            if fn in fns:
                fns.remove(fn)

        return remove

    def get(self, *keys: str) -> list[F]:
        return [fn for k in keys for fn in list(self._by_key.get(k, ()))]


async def call(fn: Callable[..., Any], *args: Any) -> BaseException | None:
    """Run one handler; its failure is logged and returned, never raised into the run loop
    (one broken handler must not stop the stream for the others)."""
    try:
        r = fn(*args)
        if inspect.isawaitable(r):
            await r
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.exception("handler %r failed", fn)
        return e
    return None


class _End:
    pass


_END = _End()


class EventStream:
    """``async for ev in client.events()``. Fed only once created (so handler-only users hold
    no buffer); when full, the client stops reading the socket until it is drained, which the
    server may answer with slow_consumer (4010): a resume, nothing lost."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[Frame | _End] = asyncio.Queue(maxsize)
        self._ended = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Frame:
        if self._ended and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            raise StopAsyncIteration
        return item

    async def put(self, frame: Frame) -> None:
        if not self._ended:
            await self._queue.put(frame)

    def end(self) -> None:
        """No more events (client closed). Already queued events are still yielded."""
        self._ended = True
        if not self._queue.full():
            self._queue.put_nowait(_END)

