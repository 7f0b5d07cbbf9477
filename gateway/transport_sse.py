"""Server-Sent Events fallback: the same Connection as /ws, written as an event stream.

The SSE `id` of every event is its resume position `epoch:seq`, so the browser's automatic
reconnect (Last-Event-ID) resumes exactly. Client frames arrive as small authenticated POSTs.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gateway import metrics, protocol, tracing
from gateway.auth import AuthError, Identity, verify
from gateway.connection import Connection, Outgoing
from gateway.context import Context
from gateway.handshake import ConnectRefused, bearer, check_connect
from gateway.ratelimit import TokenBucket
from vocab import logsetup

RETRY_MS = 1000


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status)


def authenticate(request: Request, ctx: Context) -> Identity | JSONResponse:
    token = bearer(request.headers.get("authorization")) or request.query_params.get("token")
    try:
        return verify(ctx.auth, token or "")
    except AuthError as e:
        return _error(401, e.code, e.message)


def _one_shot(frame: protocol.ServerFrame, retry_ms: int) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        yield f"retry: {retry_ms}\n\n"
        yield protocol.format_sse(frame, None)

    return StreamingResponse(body(), media_type="text/event-stream")


async def sse_endpoint(request: Request, ctx: Context) -> Response:
    s = ctx.settings
    if ctx.hub.draining:
        return _one_shot(protocol.error("server_shutdown", "replica is shutting down"), RETRY_MS)
    try:
        params = check_connect(
            ctx.auth,
            s.allowed_origins,
            request.headers,
            request.query_params,
            request.headers.get("last-event-id") or request.query_params.get("since") or None,
        )
    except ConnectRefused as e:
        return _error(e.status, e.code, e.message)
    ident, device, since = params.ident, params.device, params.since

    conn = ctx.hub.new_connection(ident.user, device, "sse", ident.expires_at)
    logsetup.bind(user=conn.user, conn=conn.conn_id)
    try:
        page = await asyncio.wait_for(ctx.hub.register(conn, since), s.handshake_timeout_s)
    except TimeoutError:
        await ctx.hub.remove(conn)
        return _one_shot(
            protocol.error("handshake_timeout", "session attach took too long"), RETRY_MS
        )
    except ctx.attach_refused as e:
        await ctx.hub.remove(conn)
        return _one_shot(protocol.error(e.code.name, str(e)), 5000)
    # The replay runs beside the stream so the stream's reader paces it.
    conn.background = asyncio.create_task(ctx.hub.replay(conn, page))

    return StreamingResponse(
        _stream(conn, ctx),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(conn: Connection, ctx: Context) -> AsyncIterator[str]:
    s = ctx.settings
    # One watcher for the whole stream, and a getter task only when the queue is empty: a busy
    # stream creates no task per frame, and closing the generator leaves no task pending.
    closed = asyncio.create_task(conn.closed.wait())
    get: asyncio.Task[Outgoing] | None = None
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            if conn.expires_at <= time.time():
                conn.fail(protocol.TOKEN_EXPIRED)
            if conn.closed.is_set():
                code = conn.close_code or protocol.NORMAL
                if code is not protocol.NORMAL:
                    yield protocol.format_sse(protocol.error(code.name, code.action), None)
                return
            out = conn.next_nowait()
            if out is None:
                get = asyncio.create_task(conn.next_out())
                done, _ = await asyncio.wait(
                    {get, closed}, timeout=s.heartbeat_s, return_when=asyncio.FIRST_COMPLETED
                )
                if get in done:
                    out = get.result()
                else:
                    get.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await get
                    if not done:
                        yield protocol.sse_comment(f"ping {int(time.time())}")
                    continue
            # Whatever else is queued goes in the same chunk: SSE messages need no framing
            # beyond their blank line, so a replay is a few writes, not one per event.
            outs = [out]
            while len(outs) < protocol.MAX_BATCH and (nxt := conn.next_nowait()):
                outs.append(nxt)
            started = tracing.write_started()
            yield "".join(protocol.format_sse(f, i if _has_position(f) else None)
                          for f, i in outs)
            for frame, _ in outs:
                metrics.delivered("sse", frame)
                if started:  # the yield returns once the server took the chunk
                    tracing.frame_written(protocol.body(frame), "sse", conn.conn_id, started)
    finally:
        for task in (closed, get):
            if task is not None and not task.done():
                task.cancel()
        await ctx.hub.remove(conn)


def _has_position(out: protocol.Frame) -> bool:
    # Only frames that move the position carry an id (so Last-Event-ID is always a position).
    kind = protocol.body(out).get("type")
    return kind in ("welcome", "resync_required") or protocol.is_event(out)


async def sse_post(request: Request, ctx: Context, conn_id: str, action: str) -> Response:
    ident = authenticate(request, ctx)
    if isinstance(ident, JSONResponse):
        return ident
    conn = ctx.hub.conns.get(conn_id)
    if conn is None or conn.user != ident.user or conn.transport != "sse":
        # Same answer for "not here" and "not yours": no probing of other users' ids.
        return _error(404, "not_found", "no such SSE connection on this replica")
    if conn.bucket is None:
        conn.bucket = TokenBucket(ctx.settings.rate_per_s, ctx.settings.rate_burst)
    if not conn.bucket.allow(time.monotonic()):
        return _error(429, "rate_limited", "too many requests; slow down")
    limit = ctx.settings.max_frame_bytes
    try:
        raw = await asyncio.wait_for(_bounded_body(request, limit), ctx.settings.header_timeout_s)
    except TimeoutError:
        return _error(408, "request_timeout", "request body too slow")
    if raw is None:
        return _error(413, "frame_too_large", f"body above {limit} bytes")
    try:
        body = json.loads(raw) if raw else {}
        if not isinstance(body, dict):
            raise ValueError
    except (ValueError, RecursionError):  # RecursionError: nesting too deep for the C scanner
        return _error(400, "bad_frame", "body must be a JSON object")
    body["type"] = action
    limits = protocol.CodecLimits(
        max_frame_bytes=ctx.settings.max_frame_bytes, max_filter_items=ctx.settings.max_filter_items
    )
    try:
        frame = protocol.decode_object(body, limits)
    except protocol.ProtocolError as e:
        return _error(413 if e.code == "frame_too_large" else 400, e.code, e.message)
    await ctx.frames.handle(conn, frame)
    return JSONResponse({"ok": True})


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is larger than `limit` (never buffered whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 15 or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
