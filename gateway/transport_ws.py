"""WebSocket transport: handshake checks, then three loops (reader, writer, heartbeat) around one
Connection. Every way out goes through the same cleanup: detach, flush ack, close with a code
from the catalogue."""

import asyncio
import contextlib
import logging
import re
import time
import uuid

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from actors.session_core import Position
from gateway import protocol
from gateway.auth import AuthError, verify
from gateway.connection import Connection
from gateway.context import Context
from gateway.ratelimit import TokenBucket

log = logging.getLogger("gateway.ws")

DEVICE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_PROTOCOL_ERRORS = 10
MAX_RATE_VIOLATIONS = 20


def bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """No Origin (non-browser client) is fine; a browser must be same-host or allowlisted."""
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    bare = origin.split("://", 1)[-1]
    return host is not None and bare == host


async def _refuse(ws: WebSocket, code: protocol.CloseCode, message: str) -> None:
    # Accept first so the client sees a close code from the catalogue, not a bare HTTP 403.
    if ws.client_state == WebSocketState.CONNECTING:
        await ws.accept()
    with contextlib.suppress(Exception):
        await ws.send_text(protocol.encode(protocol.error(code.name, message), "json"))  # type: ignore[arg-type]
        await ws.close(code.code, code.name)


async def websocket_endpoint(ws: WebSocket, ctx: Context) -> None:
    s = ctx.settings
    if ctx.hub.draining:
        await _refuse(ws, protocol.SERVER_SHUTDOWN, "replica is shutting down")
        return
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), s.allowed_origins):
        await _refuse(ws, protocol.FORBIDDEN_ORIGIN, "origin not allowed")
        return
    token = bearer(ws.headers.get("authorization")) or ws.query_params.get("token")
    try:
        ident = verify(ctx.auth, token or "")
    except AuthError as e:
        code = protocol.TOKEN_EXPIRED if e.code == "token_expired" else protocol.UNAUTHORIZED
        await _refuse(ws, code, e.message)
        return
    device = ws.query_params.get("device") or uuid.uuid4().hex[:16]
    since = ws.query_params.get("since") or None
    if not DEVICE_RE.match(device):
        await _refuse(ws, protocol.PROTOCOL_ERROR, "bad device id")
        return
    if since is not None:
        try:
            Position.parse(since)
        except ValueError:
            await _refuse(ws, protocol.PROTOCOL_ERROR, "bad since position")
            return
    enc, subprotocol = protocol.choose_encoding(list(ws.scope.get("subprotocols", [])))
    await ws.accept(subprotocol=subprotocol)

    conn = ctx.hub.new_connection(ident.user, device, "websocket", ident.expires_at)
    try:
        await asyncio.wait_for(ctx.hub.attach(conn, since), s.handshake_timeout_s)
    except TimeoutError:
        await ctx.hub.remove(conn)
        await _refuse(ws, protocol.HANDSHAKE_TIMEOUT, "session attach took too long")
        return
    except ctx.attach_refused as e:
        await ctx.hub.remove(conn)
        await _refuse(ws, e.code, str(e))
        return

    tasks = [
        asyncio.create_task(_writer(ws, conn, enc)),
        asyncio.create_task(_reader(ws, conn, ctx, enc)),
        asyncio.create_task(_heartbeat(conn, ctx)),
    ]
    try:
        await conn.closed.wait()
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        await ctx.hub.remove(conn)
        final = conn.close_code
        if final is not None and ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(final.code, final.name)


async def _writer(ws: WebSocket, conn: Connection, enc: protocol.Encoding) -> None:
    try:
        while True:
            frame, _ = await conn.queue.get()
            data = protocol.encode(frame, enc)
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_text(data)
    except (WebSocketDisconnect, RuntimeError, OSError):
        conn.fail(protocol.NORMAL)


async def _reader(ws: WebSocket, conn: Connection, ctx: Context, enc: protocol.Encoding) -> None:
    s = ctx.settings
    limits = protocol.CodecLimits(
        max_frame_bytes=s.max_frame_bytes, max_filter_items=s.max_filter_items
    )
    bucket = TokenBucket(s.rate_per_s, s.rate_burst)
    errors = violations = 0
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                conn.fail(protocol.NORMAL)
                return
            text, data = msg.get("text"), msg.get("bytes")
            raw: str | bytes = text if text is not None else (data or b"")
            conn.last_seen = time.monotonic()
            if not bucket.allow(time.monotonic()):
                violations += 1
                conn.push(protocol.error("rate_limited", "too many frames; slow down"))
                if violations > MAX_RATE_VIOLATIONS:
                    conn.fail(protocol.RATE_LIMITED)
                    return
                continue
            try:
                frame = protocol.decode(raw, enc, limits)
            except protocol.ProtocolError as e:
                conn.push(protocol.error(e.code, e.message))
                if e.code == "frame_too_large":
                    conn.fail(protocol.FRAME_TOO_LARGE)
                    return
                errors += 1
                if errors > MAX_PROTOCOL_ERRORS:
                    conn.fail(protocol.PROTOCOL_ERROR)
                    return
                continue
            await ctx.frames.handle(conn, frame)
    except (WebSocketDisconnect, RuntimeError, OSError):
        conn.fail(protocol.NORMAL)


async def _heartbeat(conn: Connection, ctx: Context) -> None:
    s = ctx.settings
    while not conn.closed.is_set():
        until_expiry = conn.expires_at - time.time()
        if until_expiry <= 0:
            conn.fail(protocol.TOKEN_EXPIRED)
            return
        await asyncio.sleep(min(s.heartbeat_s, until_expiry + 0.01))
        if time.monotonic() - conn.last_seen > s.heartbeat_timeout_s:
            conn.fail(protocol.HEARTBEAT_TIMEOUT)
            return
        if conn.expires_at - time.time() > 0:
            conn.push(protocol.ping(time.time()))
