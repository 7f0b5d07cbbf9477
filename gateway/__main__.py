"""Run one gateway replica: python -m gateway.

uvicorn closes open WebSockets itself on shutdown (code 1012) before the app lifespan ends, so the
server is wrapped: on SIGTERM we first close every connection with our own code 4011 ("reconnect
elsewhere and resume"), detach them from their actors, then let uvicorn finish.
"""

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway import protocol
from gateway.app import configure_logging, create_app
from gateway.config import load_or_exit
from vocab.logsetup import RedactTokens

__all__ = ["RedactTokens", "main"]

log = logging.getLogger("gateway.http")


class DrainingServer(uvicorn.Server):
    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        ctx = self.config.loaded_app_ctx  # type: ignore[attr-defined]
        await ctx.hub.drain(protocol.SERVER_SHUTDOWN)
        await super().shutdown(sockets)


class HeadGuardProtocol(HttpToolsProtocol):
    """Slow-loris guard. uvicorn arms no timer while a request head is incomplete (only the
    keep-alive timer after a response, cancelled by the first new byte) and httptools has no size
    limit on it, so a client dribbling header lines held a socket, and memory, forever. Every
    request head (also a WebSocket upgrade) must be complete within `head_timeout_s` and
    `max_head_bytes`: else 408 / 431 and the socket is closed."""

    head_timeout_s = 10.0
    max_head_bytes = 32768
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _in_head = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still in the head after this chunk (a head that ended in it is not counted).
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(431, "Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a keep-alive connection
            self._start_head()

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        transport = self.transport
        super().handle_websocket_upgrade()
        # The WebSocket layer parses the head again, more strictly (lines up to 8 KiB, 128
        # headers, GET without a body). When it refuses, uvicorn never sends its answer and the
        # socket hung forever: send it (or a 400) and close.
        conn: Any = getattr(transport.get_protocol(), "conn", None)
        exc = getattr(conn, "handshake_exc", None)
        if exc is None or transport.is_closing():
            return
        log.warning("%s: WebSocket upgrade refused: %r", self.client, exc)
        transport.write(b"".join(conn.data_to_send()) or _http_error(400, "Bad Request"))
        transport.close()

    def _start_head(self) -> None:
        self._in_head, self._head_bytes = True, 0
        if self._head_timer is None:
            self._head_timer = asyncio.get_running_loop().call_later(
                self.head_timeout_s, self._refuse, 408, "Request Timeout"
            )

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, reason: str) -> None:
        self._end_head()
        if self.transport.is_closing():
            return
        log.warning("%s: request head not complete within %.1f s / %d bytes: %d",
                    self.client, self.head_timeout_s, self.max_head_bytes, status)
        if self.cycle is None or self.cycle.response_complete:  # never inside another response
            self.transport.write(_http_error(status, reason))
        self.transport.close()


def _http_error(status: int, reason: str) -> bytes:
    body = reason.encode("ascii")
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, body, len(body), body)
    )


def head_guard(timeout_s: float, max_bytes: int) -> type[HeadGuardProtocol]:
    class Configured(HeadGuardProtocol):
        head_timeout_s = timeout_s
        max_head_bytes = max_bytes

    return Configured


def main() -> None:
    settings = load_or_exit()
    configure_logging(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.bind,
        port=settings.app_port,
        http=head_guard(settings.header_timeout_s, settings.max_header_bytes),
        # The sans-I/O implementation waits while the socket's write buffer is over its
        # high-water mark; the legacy one buffered a non-reading client's frames without limit
        # (measured: 9 MB for one client), so slow consumers were never detected.
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        # Liveness is the app-level heartbeat (close 4012), so every close a client sees comes
        # from our catalogue; uvicorn's own ping would close with a bare 1011 instead.
        ws_ping_interval=None,
        timeout_graceful_shutdown=10,
        log_level=settings.log_level.lower(),
        # Our root handler (vocab/logsetup.py) formats and redacts uvicorn's lines too.
        log_config=None,
        proxy_headers=False,
    )
    # Also on uvicorn's loggers themselves (the root handler redacts again: belt and braces).
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    config.loaded_app_ctx = app.state.ctx  # type: ignore[attr-defined]
    DrainingServer(config).run()


if __name__ == "__main__":
    main()
