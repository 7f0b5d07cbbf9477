"""Everything that happens on an open link: server frames (welcome, events, resync, errors),
client frames (subscribe, acks) and state reporting. The run loop that opens links and decides
what to do when they end is runtime.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import httpx

from clients.pyclient import closecodes as cc
from clients.pyclient.backoff import Backoff
from clients.pyclient.handlers import EventStream, Registry, call
from clients.pyclient.links import Encoding, Frame, SseLink, TransportName, WsLink
from clients.pyclient.position import AckCoalescer, PositionTracker, StreamPosition
from vocab.events import EVENT_TYPES

log = logging.getLogger("clients.pyclient")

State = Literal["connecting", "open", "reconnecting", "closed"]
EventHandler = Callable[[Frame], Awaitable[None] | None]
StateHandler = Callable[[State, dict[str, Any]], Awaitable[None] | None]
ErrorHandler = Callable[[Frame], Awaitable[None] | None]
Link = WsLink | SseLink

EVENT_KEYS = frozenset(EVENT_TYPES | {"*"})
HEARTBEAT_FACTOR = 2.5  # silence longer than this many heartbeats means the link is dead
FINAL_ACK_TIMEOUT = 5.0
# `error` codes that answer a subscribe/unsubscribe (unavailable: user filters not stored).
SUBSCRIBE_ERRORS = frozenset({"bad_field", "filter_too_large", "unavailable"})


class SubscribeRefused(Exception):
    def __init__(self, frame: Frame) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.frame = frame


def is_seq(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


@dataclass
class Conn:
    """One link plus what the server told us about it."""

    link: Link
    welcomed: bool = False
    conn_id: str | None = None
    heartbeat: float | None = None
    pending_close: int | None = None  # SSE: an ambiguous close name; a close if the stream ends


@dataclass(frozen=True)
class Ended:
    kind: TransportName
    code: int | None
    reason: str
    welcomed: bool = False
    opened: bool = True
    local: bool = False  # decided by us (watchdog, handler failure), not said by the server
    token_error: bool = False


class TokenError(Exception):
    pass


class Dispatcher:
    """Per-link frame handling and shared client state; Runtime adds the run loop."""

    # Configuration, set by TaskSyncClient.__init__.
    _urls: list[str]
    _token: str | None
    _get_token: Callable[[], Awaitable[str]] | None
    _device: str
    _tracker: PositionTracker
    _primary: TransportName
    _fallback_enabled: bool
    _encoding: Encoding
    _ws_failures_before_fallback: int
    _retry_ws_after: float
    _backoff: Backoff
    _acks: AckCoalescer
    _conn_filters: dict[str, Any] | None
    _ws_path: str
    _sse_path: str
    _connect_timeout: float
    _rng: random.Random

    def __init__(self) -> None:
        self._handlers: Registry[EventHandler] = Registry()
        self._resync_handlers: Registry[EventHandler] = Registry()
        self._state_handlers: Registry[StateHandler] = Registry()
        self._error_handlers: Registry[ErrorHandler] = Registry()
        self._state: State = "closed"
        self._state_info: dict[str, Any] = {}
        self._state_changed = asyncio.Event()
        self._url_idx = 0
        self._conn: Conn | None = None
        self._handoff: tuple[Conn, Frame] | None = None  # a probe WebSocket that said welcome
        self._on_fallback = False
        self._fallback_since = 0.0
        self._ws_failures = 0
        self._immediate_used = False
        self._queued_user: list[Frame] = []
        # FIFO of sent subscribe/unsubscribe frames awaiting `subscribed`; None = nobody waits.
        self._waiters: list[tuple[str, asyncio.Future[Frame | None] | None]] = []
        self._stream: EventStream | None = None
        self._http: httpx.AsyncClient | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._ack_task: asyncio.Task[None] | None = None
        self._ack_wake = asyncio.Event()
        self._done = asyncio.Event()
        self._stopping = False
        self._close_info: dict[str, Any] | None = None

    # -- frames --------------------------------------------------------------------------------
    async def _on_frame(self, conn: Conn, f: Frame) -> Ended | None:
        t = f["type"]
        if t == "batch":
            # Several event frames in one message (we connect with batch=1): each in order.
            inner = f.get("frames")
            for g in inner if isinstance(inner, list) else []:
                if isinstance(g, dict) and isinstance(g.get("type"), str) and g["type"] != "batch":
                    ended = await self._on_frame(conn, g)
                    if ended is not None:
                        return ended
            return None
        if t == "ping":
            if isinstance(conn.link, WsLink):
                await conn.link.send(pong(f))
            return None
        if t == "pong":
            return None
        if t == "error":
            return await self._on_error_frame(conn, f)
        conn.pending_close = None  # the stream went on: a preceding error was not a close
        if t == "welcome":
            await self._on_welcome(conn, f)
        elif t == "resync_required":
            return await self._on_resync(conn, f)
        elif t == "subscribed":
            self._on_subscribed(f)
        elif conn.welcomed and is_seq(f.get("seq")) and "data" in f:
            await self._on_event(f)
        elif conn.welcomed and is_seq(f.get("bseq")) and "data" in f:
            await self._on_broadcast(f)
        return None

    async def _on_welcome(self, conn: Conn, f: Frame) -> None:
        epoch, seq = f.get("epoch"), f.get("seq")
        if not isinstance(epoch, str) or not is_seq(seq):
            return
        conn.welcomed = True
        conn.conn_id = f["conn_id"] if isinstance(f.get("conn_id"), str) else None
        hb = f.get("heartbeat")
        ok_hb = isinstance(hb, int | float) and not isinstance(hb, bool) and hb > 0
        conn.heartbeat = float(hb) if ok_hb and hb is not None else None
        self._tracker.user.welcome(epoch, seq)
        bepoch, bseq = f.get("bepoch"), f.get("bseq")
        if isinstance(bepoch, str) and is_seq(bseq):
            self._tracker.broadcast.welcome(bepoch, bseq)
        self._backoff.reset()
        self._immediate_used = False
        if conn.link.kind == "websocket":
            self._ws_failures = 0
            self._on_fallback = False
        await self._set_state("open", {
            **self._where(conn.link.kind), "url": conn.link.url, "conn_id": conn.conn_id,
            "resumed": bool(f.get("resumed")), "position": str(self._tracker.position),
            "encoding": conn.link.encoding if isinstance(conn.link, WsLink) else "json",
        })
        if self._conn_filters is not None:
            frame = {"type": "subscribe", "filters": self._conn_filters, "scope": "connection"}
            await self._send_control(conn, frame, None)
        queued, self._queued_user = self._queued_user, []
        for frame in queued:
            await self._send_control(conn, frame, None)
        if self._acks.pending is not None:
            self._ack_wake.set()

    async def _on_event(self, f: Frame) -> None:
        seq: int = f["seq"]
        if await self._handle(f, self._tracker.user, seq):
            self._acks.note(seq)
            self._ack_wake.set()

    async def _on_broadcast(self, f: Frame) -> None:
        """An event of the shared broadcast stream: the same handlers, deduped by bseq, never
        acked (the server keeps no device cursor for broadcasts)."""
        await self._handle(f, self._tracker.broadcast, f["bseq"])

    async def _handle(self, f: Frame, stream: StreamPosition, seq: int) -> bool:
        """Run the handlers for a new event of `stream`; False for a duplicate (replay overlap
        after a transport switch: already processed). The position moves only after them."""
        if not stream.is_new(seq):
            return False
        for h in self._handlers.get(f["type"], "*"):
            await call(h, f)
        if self._stream is not None:
            await self._stream.put(f)
        stream.processed(seq)
        return True

    async def _on_resync(self, conn: Conn, f: Frame) -> Ended | None:
        epoch, seq = f.get("epoch"), f.get("seq")
        if not isinstance(epoch, str) or not is_seq(seq):
            return None
        failed = [e for h in self._resync_handlers.get("*") if (e := await call(h, f))]
        if failed:
            # Keep the old position: the next connection gets resync_required again.
            return Ended(conn.link.kind, None, "resync_handler_failed", conn.welcomed, local=True)
        if f.get("stream") == "broadcast":
            self._tracker.broadcast.resync(epoch, seq)  # acks stay the user stream's
            return None
        self._tracker.user.resync(epoch, seq)
        self._acks.note(seq)
        self._ack_wake.set()
        return None

    async def _on_error_frame(self, conn: Conn, f: Frame) -> Ended | None:
        for h in self._error_handlers.get("*"):
            await call(h, f)
        name = f.get("code")
        if not isinstance(name, str):
            return None
        if name in SUBSCRIBE_ERRORS:
            self._reject_waiter(f)
        code = cc.code_for_name(name)
        if not isinstance(conn.link, SseLink) or code is None:
            return None  # WebSocket: a fatal error is followed by a real close code
        if name in cc.AMBIGUOUS_SSE_NAMES:
            conn.pending_close = code
            return None
        return Ended("sse", code, name, conn.welcomed)

    # -- client frames -------------------------------------------------------------------------
    async def _deliver(self, conn: Conn, frame: Frame) -> bool:
        link = conn.link
        if isinstance(link, WsLink):
            return await link.send(frame)
        if conn.conn_id is None:
            return False
        body = {k: v for k, v in frame.items() if k != "type"}
        return await link.post(conn.conn_id, frame["type"], body, self._token or "")

    async def _send_control(
        self, conn: Conn, frame: Frame, fut: asyncio.Future[Frame | None] | None
    ) -> bool:
        entry = (str(frame["scope"]), fut)
        self._waiters.append(entry)
        if await self._deliver(conn, frame):
            return True
        with contextlib.suppress(ValueError):
            self._waiters.remove(entry)
        return False

    async def _control(self, frame: Frame, wait_s: float) -> Frame | None:
        conn = self._conn
        if conn is None or not conn.welcomed:
            if frame["scope"] == "user" and not self._stopping:
                self._queued_user.append(frame)
            return None
        fut: asyncio.Future[Frame | None] = asyncio.get_running_loop().create_future()
        if not await self._send_control(conn, frame, fut):
            return None
        try:
            async with asyncio.timeout(wait_s):
                return await fut
        except TimeoutError:
            return None
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not fut]

    def _on_subscribed(self, f: Frame) -> None:
        for i, (scope, fut) in enumerate(self._waiters):
            if scope == f.get("scope"):
                del self._waiters[i]
                if fut is not None and not fut.done():
                    fut.set_result(f)
                return

    def _reject_waiter(self, f: Frame) -> None:
        # Only user-scope subscribes touch the store, so only they can be `unavailable`.
        for i, (scope, fut) in enumerate(self._waiters):
            if f.get("code") != "unavailable" or scope == "user":
                del self._waiters[i]
                if fut is not None and not fut.done():
                    fut.set_exception(SubscribeRefused(f))
                return

    def _resolve_waiters(self) -> None:
        """The link is gone: nobody will answer these."""
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if fut is not None and not fut.done():
                fut.set_result(None)

    # -- acks ----------------------------------------------------------------------------------
    async def _ack_loop(self) -> None:
        while True:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            delay = self._acks.delay(time.monotonic())
            if delay > 0:
                # Too soon after the last ack: wait, then look again (timers may fire a hair
                # early, and more events may have been processed meanwhile).
                await asyncio.sleep(delay)
                self._ack_wake.set()
                continue
            await self._send_ack(final=False)

    async def _send_ack(self, final: bool) -> None:
        conn = self._conn
        if conn is None or not conn.welcomed:
            return  # stays pending; the next welcome wakes the ack loop
        now = time.monotonic()
        seq = self._acks.flush(now) if final else self._acks.take(now)
        if seq is None:
            return
        if not await self._deliver(conn, {"type": "ack", "seq": seq}):
            self._acks.failed(seq)

    async def _final_ack(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(FINAL_ACK_TIMEOUT):
                await self._send_ack(final=True)

    # -- state ---------------------------------------------------------------------------------
    async def _set_state(self, state: State, info: dict[str, Any]) -> None:
        self._state = state
        self._state_info = info
        log.info("tasksync client %s %s", state, info)
        # Wake every wait_open(); a fresh event for the next change.
        changed, self._state_changed = self._state_changed, asyncio.Event()
        changed.set()
        for h in self._state_handlers.get("*"):
            await call(h, state, dict(info))

    def _where(self, kind: TransportName) -> dict[str, Any]:
        return {"transport": kind, "url": self._urls[self._url_idx],
                "attempt": self._backoff.attempt}

    def _peek_transport(self) -> TransportName:
        raise NotImplementedError  # the run loop (runtime.py) knows the transport plan


def pong(ping: Frame) -> Frame:
    ts = ping.get("ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        return {"type": "pong", "ts": ts}
    return {"type": "pong"}

