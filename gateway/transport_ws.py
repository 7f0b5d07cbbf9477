"""WebSocket transport: handshake checks, then three loops (reader, writer, heartbeat) around one
Connection. Every way out goes through the same cleanup: detach, flush ack, close with a code
from the catalogue."""

import asyncio
import contextlib
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gateway import metrics, protocol, tracing
from gateway.connection import Connection
from gateway.context import Context
from gateway.handshake import ConnectRefused, check_connect
from gateway.hub import ReplayPage
from gateway.ratelimit import TokenBucket
from vocab import logsetup

log = logging.getLogger("gateway.ws")

MAX_PROTOCOL_ERRORS = 10
MAX_RATE_VIOLATIONS = 20


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
    try:
        params = check_connect(
            ctx.auth,
            s.allowed_origins,
            ws.headers,
            ws.query_params,
            ws.query_params.get("since") or None,
        )
    except ConnectRefused as e:
        await _refuse(ws, e.close, e.message)
        return
    ident, device, since = params.ident, params.device, params.since
    enc, subprotocol = protocol.choose_encoding(list(ws.scope.get("subprotocols", [])))
    await ws.accept(subprotocol=subprotocol)

    conn = ctx.hub.new_connection(ident.user, device, "websocket", ident.expires_at)
    conn.batching = ws.query_params.get("batch") == "1"  # the client reads `batch` messages
    logsetup.bind(user=conn.user, conn=conn.conn_id)  # every line of its tasks says whose
    # The writer runs during attach: a long replay is paced by it rather than queued whole.
    tasks = [asyncio.create_task(_writer(ws, conn, enc, s.send_timeout_s))]
    try:
        # Only the actor's answer is bounded by the handshake timeout; the replay after it is
        # paced by the client's reading speed (send timeout).
        page: ReplayPage = ([], False)
        try:
            page = await asyncio.wait_for(ctx.hub.register(conn, since), s.handshake_timeout_s)
        except TimeoutError:
            conn.fail(protocol.HANDSHAKE_TIMEOUT)
        except ctx.attach_refused as e:
            log.info("attach refused for %s: %s", conn.user, e)
            conn.fail(e.code)  # the close code names the reason
        if not conn.closed.is_set():
            # Replay, reading and heartbeats run side by side: a long replay must not starve
            # the client's pongs, and a close must not wait for the replay to finish.
            tasks += [
                asyncio.create_task(ctx.hub.replay(conn, page)),
                asyncio.create_task(_reader(ws, conn, ctx, enc)),
                asyncio.create_task(_heartbeat(conn, ctx)),
            ]
        await conn.closed.wait()
    finally:
        for t in tasks:
            t.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=2.0)
        if stuck:
            log.warning("%s: %d task(s) did not stop within 2 s", conn.conn_id, len(stuck))
        # Close before detaching: a draining replica waits for remove(), and the client must
        # have our close code by then, not the server's generic 1012.
        final = conn.close_code
        log.info(
            "closing %s user=%s code=%s %s",
            conn.conn_id,
            conn.user,
            final.code if final else None,
            final.name if final else "",
        )
        if final is not None and ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(final.code, final.name), 2.0)
        await ctx.hub.remove(conn)


def _ended(ws: WebSocket, conn: Connection, e: Exception) -> None:
    """Starlette raises RuntimeError for a send or receive on a socket that already closed: that
    is a normal end. Any other RuntimeError is a bug: logged with its traceback, closed 4500."""
    gone = WebSocketState.DISCONNECTED
    if isinstance(e, WebSocketDisconnect | OSError) or gone in (
        ws.client_state, ws.application_state
    ):
        conn.fail(protocol.NORMAL)
        return
    log.error("%s: unexpected transport error", conn.conn_id, exc_info=e)
    conn.fail(protocol.INTERNAL_ERROR)


async def _writer(
    ws: WebSocket, conn: Connection, enc: protocol.Encoding, send_timeout: float
) -> None:
    try:
        while True:
            frame, _ = await conn.next_out()
            frames = [frame]
            if conn.batching and protocol.is_event(frame):
                # Only what is already queued: batching never waits for more.
                while len(frames) < protocol.MAX_BATCH and (nxt := conn.next_nowait()):
                    frames.append(nxt[0])
            for group in protocol.batches(frames):
                await _send(ws, conn, group, enc, send_timeout)
    except TimeoutError:
        # The socket buffers are full and stay full: it stopped reading. The log has it all.
        conn.fail(protocol.SLOW_CONSUMER)
    except (WebSocketDisconnect, RuntimeError, OSError) as e:
        _ended(ws, conn, e)


async def _send(ws: WebSocket, conn: Connection, group: list[protocol.Frame],
                enc: protocol.Encoding, send_timeout: float) -> None:
    started = tracing.write_started()
    data = (protocol.encode(group[0], enc) if len(group) == 1
            else protocol.encode_batch(group, enc))
    # asyncio.timeout, not wait_for: no task per message.
    async with asyncio.timeout(send_timeout):
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_text(data)
    for frame in group:
        metrics.delivered("websocket", frame)
        if started:
            tracing.frame_written(protocol.body(frame), "websocket", conn.conn_id, started)


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
    except (WebSocketDisconnect, RuntimeError, OSError) as e:
        _ended(ws, conn, e)


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
