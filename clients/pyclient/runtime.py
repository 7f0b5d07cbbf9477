"""The run loop behind TaskSyncClient: connect, pump frames until the link ends, decide by the
close-code catalogue, back off, repeat; plus a WebSocket probe while on the SSE fallback.

Single task per concern, all on one event loop, so the frame order of a connection is the order
handlers see and no locks are needed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from clients.pyclient import closecodes as cc
from clients.pyclient.dispatch import (
    HEARTBEAT_FACTOR,
    Conn,
    Dispatcher,
    Ended,
    Link,
    TokenError,
    pong,
)
from clients.pyclient.links import (
    Alive,
    ConnectFailed,
    Frame,
    LinkClosed,
    SseLink,
    TransportName,
    WsLink,
)

log = logging.getLogger("clients.pyclient")


class Runtime(Dispatcher):
    # -- run loop ------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._set_state("connecting", self._where(self._peek_transport()))
            while not self._stopping:
                handoff, self._handoff = self._handoff, None
                if handoff is not None:
                    ended = await self._serve(*handoff)
                else:
                    ended = await self._attempt()
                if self._stopping or self._handoff is not None:
                    continue
                if not await self._after(ended):
                    break
        except Exception as e:
            # A bug here must end in state "closed" with a reason, not a silently dead task.
            log.exception("tasksync client run loop failed")
            self._close_info = {"reason": f"internal_error: {e!r}"[:200]}
        finally:
            await self._finish()

    async def _attempt(self) -> Ended:
        kind = self._pick_transport()
        url = self._urls[self._url_idx]
        try:
            token = await self._current_token()
        except TokenError as e:
            return Ended(kind, None, f"token_error: {e}", opened=False, token_error=True)
        try:
            link = await self._open_link(kind, url, token)
        except ConnectFailed as e:
            return Ended(kind, e.code, e.reason, opened=False)
        return await self._serve(Conn(link))

    async def _serve(self, conn: Conn, first: Frame | None = None) -> Ended:
        """Pump one link until it ends; returns how it ended."""
        self._conn = conn
        link = conn.link
        probe = None
        if link.kind == "sse" and self._on_fallback:
            probe = asyncio.create_task(self._probe(conn), name="tasksync-ws-probe")
        try:
            if first is not None:
                await self._on_frame(conn, first)
            while not self._stopping:
                if conn.welcomed:
                    budget = HEARTBEAT_FACTOR * conn.heartbeat if conn.heartbeat else None
                else:
                    budget = self._connect_timeout
                try:
                    async with asyncio.timeout(budget):
                        item = await link.recv()
                except TimeoutError:
                    silent = cc.HEARTBEAT_TIMEOUT if conn.welcomed else cc.HANDSHAKE_TIMEOUT
                    return Ended(link.kind, silent, "no frame in time", conn.welcomed, local=True)
                except LinkClosed as e:
                    code = e.code if e.code is not None else conn.pending_close
                    return Ended(link.kind, code, e.reason, conn.welcomed)
                if isinstance(item, Alive):
                    continue
                ended = await self._on_frame(conn, item)
                if ended is not None:
                    return ended
            return Ended(link.kind, cc.NORMAL, "client closed", conn.welcomed, local=True)
        finally:
            if self._conn is conn:
                self._conn = None
            self._resolve_waiters()
            if probe is not None:
                probe.cancel()
                await asyncio.wait({probe})
            await link.close()

    async def _after(self, ended: Ended) -> bool:
        """Decide after a link ended. False: stop for good (state closed)."""
        d = cc.decide(ended.code, ended.welcomed, ended.local)
        info = {"code": ended.code, "reason": ended.reason or cc.name_for_code(ended.code)}
        if ended.kind == "websocket" and self._fallback_enabled and not ended.token_error:
            if cc.is_ws_connect_failure(ended.code, ended.welcomed, ended.opened, ended.local):
                self._ws_failures += 1
                if self._ws_failures >= self._ws_failures_before_fallback:
                    log.info("websocket failed %d times; falling back to SSE", self._ws_failures)
                    self._ws_failures = 0
                    self._on_fallback = True
                    self._fallback_since = time.monotonic()
        if not d.reconnect:
            self._close_info = {"transport": ended.kind, **info}
            return False
        if d.refresh_token:
            if self._get_token is None:
                self._close_info = {
                    "transport": ended.kind, **info, "reason": "token_expired_no_get_token"
                }
                return False
            self._token = None  # the next attempt asks get_token first
        if d.rotate:
            self._url_idx = (self._url_idx + 1) % len(self._urls)
        if d.immediate and not self._immediate_used:
            self._immediate_used = True
            delay = 0.0
        else:
            delay = self._backoff.next()
        where = self._where(self._peek_transport())
        await self._set_state("reconnecting", {**where, **info, "delay": delay})
        await asyncio.sleep(delay)
        return True

    async def _finish(self) -> None:
        self._stopping = True
        if self._ack_task is not None and self._ack_task is not asyncio.current_task():
            self._ack_task.cancel()
            await asyncio.wait({self._ack_task})
        if self._handoff is not None:
            await self._handoff[0].link.close()
            self._handoff = None
        self._resolve_waiters()
        if self._http is not None:
            await self._http.aclose()
        info = self._close_info or {"reason": "stopped"}
        await self._set_state("closed", {**self._where(self._peek_transport()), **info})
        if self._stream is not None:
            self._stream.end()
        self._done.set()

    # -- transports ----------------------------------------------------------------------------
    def _peek_transport(self) -> TransportName:
        if not self._fallback_enabled:
            return self._primary
        return "sse" if self._on_fallback and not self._fallback_expired() else "websocket"

    def _pick_transport(self) -> TransportName:
        if self._on_fallback and self._fallback_expired():
            # SSE is not up either (we are reconnecting): go back to trying WebSocket first.
            self._on_fallback = False
        return self._peek_transport()

    def _fallback_expired(self) -> bool:
        return time.monotonic() - self._fallback_since >= self._retry_ws_after

    async def _current_token(self) -> str:
        if self._token is None:
            if self._get_token is None:
                raise TokenError("no token")
            try:
                tok = await self._get_token()
            except Exception as e:
                raise TokenError(repr(e)) from e
            if not isinstance(tok, str) or not tok:
                raise TokenError("get_token returned no token")
            self._token = tok
        return self._token

    async def _open_link(self, kind: TransportName, url: str, token: str) -> Link:
        # batch=1: the server may pack queued event frames into one `batch` message.
        query = {"device": self._device, "batch": "1"}
        since = self._tracker.resume_point()
        if kind == "websocket":
            if since is not None:
                query["since"] = since
            return await WsLink.open(
                url, self._ws_path, query, token, self._encoding, self._connect_timeout
            )
        assert self._http is not None
        return await SseLink.open(
            self._http, url, self._sse_path, query, token, since, self._connect_timeout
        )

    async def _probe(self, sse: Conn) -> None:
        """While on SSE: every retry_websocket_after, try a WebSocket; keep SSE until the
        WebSocket says welcome, then hand over (dedup by seq makes the overlap harmless)."""
        wait = self._fallback_since + self._retry_ws_after - time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, wait))
            wait = self._retry_ws_after
            if not sse.welcomed:
                continue
            try:
                token = await self._current_token()
                link = await self._open_link("websocket", sse.link.url, token)
            except (TokenError, ConnectFailed) as e:
                log.info("websocket probe failed: %s", e)
                continue
            assert isinstance(link, WsLink)
            try:
                welcome = await self._await_welcome(link)
            except (TimeoutError, LinkClosed) as e:
                log.info("websocket probe got no welcome: %r", e)
                await link.close()
                continue
            except BaseException:
                await link.close()
                raise
            log.info("websocket is back; leaving SSE")
            self._handoff = (Conn(link), welcome)
            self._on_fallback = False
            self._ws_failures = 0
            await sse.link.close()  # wakes the SSE pump, which returns to the run loop
            return

    async def _await_welcome(self, link: WsLink) -> Frame:
        async with asyncio.timeout(self._connect_timeout):
            while True:
                item = await link.recv()
                if isinstance(item, Alive):
                    continue
                if item.get("type") == "welcome":
                    return item
                if item.get("type") == "ping":
                    await link.send(pong(item))

