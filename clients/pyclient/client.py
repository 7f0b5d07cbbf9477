"""TaskSyncClient: the public API (configuration, handlers, lifecycle). The machinery lives in
runtime.py (run loop, reconnects, fallback) and dispatch.py (frames, acks, state)."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from clients.pyclient.backoff import Backoff
from clients.pyclient.dispatch import EVENT_KEYS, ErrorHandler, EventHandler, State, StateHandler
from clients.pyclient.filters import check_scope, normalize_filters
from clients.pyclient.handlers import EventStream
from clients.pyclient.links import Encoding, Frame, TransportName
from clients.pyclient.position import AckCoalescer, PositionTracker, ResumePoint
from clients.pyclient.runtime import Runtime
from vocab.ids import valid_device

TRANSPORTS: tuple[TransportName, ...] = ("websocket", "sse")


class TaskSyncClient(Runtime):
    """Async client of the task sync service (docs/protocol.md), WebSocket with SSE fallback.

    Keeps the resume position (``epoch:seq``), reconnects per the close-code catalogue with
    jittered exponential backoff, rotates over gateway replicas, coalesces acks and drops
    duplicate events. Use ``on(...)`` handlers or ``events()``; then ``await start()``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        token: str | None = None,
        get_token: Callable[[], Awaitable[str]] | None = None,
        device: str | None = None,
        since: str | None = None,
        transports: Sequence[TransportName] = TRANSPORTS,
        encoding: Encoding = "json",
        ws_failures_before_fallback: int = 2,
        retry_websocket_after: float = 60.0,
        backoff_initial: float = 0.25,
        backoff_max: float = 10.0,
        backoff_factor: float = 2.0,
        jitter: float = 0.5,
        ack_interval: float = 0.5,
        filters: Mapping[str, Sequence[str | int] | None] | None = None,
        rng: random.Random | None = None,
        ws_path: str = "/ws",
        sse_path: str = "/sse",
        connect_timeout: float = 15.0,
        event_queue_size: int = 1000,
    ) -> None:
        if isinstance(urls, str) or not urls or not all(isinstance(u, str) for u in urls):
            raise TypeError("urls must be a non-empty list of base URLs")
        if token is None and get_token is None:
            raise ValueError("token or get_token is required")
        wanted = tuple(dict.fromkeys(transports))
        if not wanted or any(t not in TRANSPORTS for t in wanted):
            raise ValueError("transports must be a non-empty subset of ('websocket', 'sse')")
        if encoding not in ("json", "msgpack"):
            raise ValueError("encoding must be 'json' or 'msgpack'")
        if ws_failures_before_fallback < 1 or retry_websocket_after <= 0:
            raise ValueError("ws_failures_before_fallback >= 1 and retry_websocket_after > 0")
        if connect_timeout <= 0 or event_queue_size < 1:
            raise ValueError("connect_timeout > 0 and event_queue_size >= 1")
        for p in (ws_path, sse_path):
            if not p.startswith("/"):
                raise ValueError("paths must start with '/'")
        self._rng = rng or random.Random()
        # Not from rng: clients seeded alike (tests) must still be distinct devices, or they
        # would share one ack cursor at the server.
        dev = device or secrets.token_hex(8)
        if not valid_device(dev):
            raise ValueError("device must be 1-64 chars of [A-Za-z0-9_.:-]")
        super().__init__()
        self._urls = [u.rstrip("/") for u in urls]
        self._token = token
        self._get_token = get_token
        self._device = dev
        self._tracker = PositionTracker(
            ResumePoint.parse(since) if since is not None else None)
        self._primary: TransportName = wanted[0]
        # Only WebSocket falls back (to SSE); an SSE-first client has nothing better to try.
        self._fallback_enabled = self._primary == "websocket" and "sse" in wanted
        self._encoding: Encoding = encoding
        self._ws_failures_before_fallback = ws_failures_before_fallback
        self._retry_ws_after = retry_websocket_after
        self._backoff = Backoff(backoff_initial, backoff_max, backoff_factor, jitter, self._rng)
        self._acks = AckCoalescer(ack_interval)
        self._conn_filters = normalize_filters(filters) if filters is not None else None
        self._ws_path = ws_path
        self._sse_path = sse_path
        self._connect_timeout = connect_timeout
        self._event_queue_size = event_queue_size

    # -- state -------------------------------------------------------------------------------
    @property
    def position(self) -> str | None:
        """The user stream's position (``epoch:seq``)."""
        p = self._tracker.position
        return str(p) if p is not None else None

    @property
    def resume_point(self) -> str | None:
        """What a new client would pass as `since` to continue exactly here (both streams)."""
        return self._tracker.resume_point()

    @property
    def transport(self) -> TransportName:
        """The transport in use, or the one the next attempt will use."""
        return self._conn.link.kind if self._conn is not None else self._peek_transport()

    @property
    def state(self) -> State:
        return self._state

    @property
    def state_info(self) -> dict[str, Any]:
        return dict(self._state_info)

    @property
    def device(self) -> str:
        return self._device

    @property
    def url(self) -> str:
        return self._conn.link.url if self._conn is not None else self._urls[self._url_idx]

    # -- handlers ------------------------------------------------------------------------------
    def on(self, event_type: str, handler: EventHandler) -> Callable[[], None]:
        """Handle one event type (``task_created``…) or all (``"*"``). Returns a remover."""
        if event_type not in EVENT_KEYS:
            raise ValueError(f"unknown event type {event_type!r}")
        return self._handlers.add(event_type, handler)

    def on_resync(self, handler: EventHandler) -> Callable[[], None]:
        """Called with the resync_required frame; reload state from the todo API here. The
        position moves to the frame's only after every handler returned without raising."""
        return self._resync_handlers.add("*", handler)

    def on_state(self, handler: StateHandler) -> Callable[[], None]:
        return self._state_handlers.add("*", handler)

    def on_error(self, handler: ErrorHandler) -> Callable[[], None]:
        """Server `error` frames (a refused client frame; on SSE also close names)."""
        return self._error_handlers.add("*", handler)

    def events(self) -> EventStream:
        """The event frames as an async iterator, fed from the moment of the first call (call
        it before start() to miss nothing). One shared bounded queue: use one consumer."""
        if self._stream is None:
            self._stream = EventStream(self._event_queue_size)
            if self._done.is_set():
                self._stream.end()
        return self._stream

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._run_task is not None:
            raise RuntimeError("start() may be called once; create a new client to reconnect")
        self._http = httpx.AsyncClient()
        self._run_task = asyncio.create_task(self._run(), name="tasksync-client")
        self._ack_task = asyncio.create_task(self._ack_loop(), name="tasksync-acks")
        await asyncio.sleep(0)  # let the loop emit "connecting" before we return

    # A timeout argument (not only asyncio.timeout by the caller) is the documented API.
    async def wait_open(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Until a connection is open (welcome received). ConnectionError once closed."""
        async with asyncio.timeout(timeout):
            while self._state != "open":
                if self._state == "closed" and (self._stopping or self._done.is_set()):
                    raise ConnectionError(f"client closed: {self._state_info}")
                await self._state_changed.wait()

    async def close(self) -> None:
        """Flush the pending ack, close the connection with 1000 and stop reconnecting."""
        if self._run_task is None:
            self._done.set()
            if self._stream is not None:
                self._stream.end()
            return
        if not self._stopping:
            self._stopping = True
            self._close_info = {"code": 1000, "reason": "client_closed"}
            await self._final_ack()
        task = self._run_task
        if task is asyncio.current_task():
            return  # called from a handler: the loop stops once the handler returns
        task.cancel()
        await asyncio.wait({task})

    # -- filters -------------------------------------------------------------------------------
    async def subscribe(
        self,
        filters: Mapping[str, Sequence[str | int] | None],
        scope: str = "connection",
        timeout: float = 10.0,  # noqa: ASYNC109 - bounds the wait for `subscribed` only
    ) -> Frame | None:
        """Narrow events. scope "connection": kept by the client and re-sent after every
        welcome. scope "user": stored by the server for all devices; sent once (queued while
        disconnected). Returns the server's `subscribed` frame, or None when it was only
        stored/queued or not confirmed within timeout."""
        sc = check_scope(scope)
        f = normalize_filters(filters)
        if sc == "connection":
            self._conn_filters = f
        return await self._control({"type": "subscribe", "filters": f, "scope": sc}, timeout)

    async def unsubscribe(
        self, scope: str = "connection", timeout: float = 10.0  # noqa: ASYNC109
    ) -> Frame | None:
        sc = check_scope(scope)
        if sc == "connection":
            self._conn_filters = None
        return await self._control({"type": "unsubscribe", "scope": sc}, timeout)
