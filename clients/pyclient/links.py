"""The two transports behind one small interface: open, recv a frame, send a frame, close.

A link knows nothing about positions or reconnects; it reports how it ended (LinkClosed) and
the client decides what that means.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx
import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

from clients.pyclient.closecodes import code_for_name
from clients.pyclient.sse import SseComment, SseParser
from vocab.events import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK

log = logging.getLogger("clients.pyclient")

Frame = dict[str, Any]
Encoding = Literal["json", "msgpack"]
TransportName = Literal["websocket", "sse"]


class Alive:
    """recv() result for a frame-less sign of life (SSE comment, undecodable frame)."""


ALIVE = Alive()
SSE_QUEUE_MAX = 256  # parsed SSE frames held before the reader stops pulling (backpressure)


class ConnectFailed(Exception):
    """The connection was never established. code: a catalogue code when the server said why
    (SSE answers auth problems with an HTTP error carrying the name), else None."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:200]  # reprs of HTTP responses get long; this ends up in state info
        self.code = code


class LinkClosed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def decode_frame(raw: str | bytes) -> Frame | None:
    """A server frame, or None when it is not an object with a string type (ignored)."""
    try:
        obj = json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.UnpackException):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("type"), str):
        return obj
    return None


def ws_url(base: str, path: str, query: dict[str, str]) -> str:
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"unsupported url scheme {parts.scheme!r}")
    full = parts.path.rstrip("/") + path
    return urlunsplit((scheme, parts.netloc, full, urlencode(query), ""))


class WsLink:
    kind: TransportName = "websocket"

    def __init__(self, url: str, ws: ClientConnection) -> None:
        self.url = url
        self._ws = ws
        # The server picks from what we offered; anything else means it fell back to JSON.
        self.encoding: Encoding = "msgpack" if ws.subprotocol == SUBPROTOCOL_MSGPACK else "json"

    @classmethod
    async def open(
        cls, base: str, path: str, query: dict[str, str], token: str, encoding: Encoding,
        connect_timeout: float,
    ) -> WsLink:
        offer = SUBPROTOCOL_MSGPACK if encoding == "msgpack" else SUBPROTOCOL_JSON
        try:
            ws = await connect(
                ws_url(base, path, query),
                additional_headers={"Authorization": f"Bearer {token}"},
                subprotocols=[Subprotocol(offer)],
                open_timeout=connect_timeout,
                # Liveness is the protocol's own heartbeat (server pings, our watchdog).
                ping_interval=None,
                close_timeout=2,
            )
        except (OSError, TimeoutError, WebSocketException) as e:
            # Refused, reset, timed out, HTTP status instead of an upgrade, bad proxy: all
            # mean "this path did not get us a WebSocket".
            raise ConnectFailed(f"websocket connect failed: {e!r}") from e
        return cls(base, ws)

    async def recv(self) -> Frame | Alive:
        try:
            raw = await self._ws.recv()
        except ConnectionClosed as e:
            rcvd = e.rcvd
            raise LinkClosed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "dropped") from e
        return decode_frame(raw) or ALIVE

    async def send(self, frame: Frame) -> bool:
        data: str | bytes = (
            msgpack.packb(frame, use_bin_type=True) if self.encoding == "msgpack"
            else json.dumps(frame, separators=(",", ":"))
        )
        try:
            await self._ws.send(data)
        except ConnectionClosed:
            return False
        return True

    async def close(self, code: int = 1000, reason: str = "client closed") -> None:
        with contextlib.suppress(Exception):
            await self._ws.close(code, reason)


class SseLink:
    kind: TransportName = "sse"

    def __init__(
        self, url: str, path: str, http: httpx.AsyncClient, resp: httpx.Response
    ) -> None:
        self.url = url
        self._path = path
        self._http = http
        self._resp = resp
        self.parser = SseParser()
        self._queue: asyncio.Queue[Frame | Alive | LinkClosed] = asyncio.Queue(SSE_QUEUE_MAX)
        self._closed = False
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, http: httpx.AsyncClient, base: str, path: str, query: dict[str, str], token: str,
        since: str | None, connect_timeout: float,
    ) -> SseLink:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if since is not None:
            headers["Last-Event-ID"] = since
        url = base.rstrip("/") + path
        # No read timeout: liveness of a long-lived stream is the client watchdog's job.
        req = http.build_request(
            "GET", url, params=query, headers=headers,
            timeout=httpx.Timeout(connect_timeout, read=None),
        )
        try:
            resp = await asyncio.wait_for(http.send(req, stream=True), connect_timeout)
        except (httpx.HTTPError, OSError, TimeoutError) as e:
            raise ConnectFailed(f"sse connect failed: {e!r}") from e
        ctype = resp.headers.get("content-type", "")
        if resp.status_code != 200 or not ctype.startswith("text/event-stream"):
            raise await _refusal(resp)
        return cls(base, path, http, resp)

    async def _read(self) -> None:
        end = LinkClosed(None, "stream ended")
        try:
            async for chunk in self._resp.aiter_bytes():
                for item in self.parser.feed(chunk):
                    if isinstance(item, SseComment):
                        await self._queue.put(ALIVE)
                    else:
                        await self._queue.put(decode_frame(item.data) or ALIVE)
        except Exception as e:  # whatever broke the stream, recv() must learn that it ended
            end = LinkClosed(None, f"stream failed: {e!r}"[:200])
        finally:
            with contextlib.suppress(Exception):
                await self._resp.aclose()
        await self._queue.put(end)

    async def recv(self) -> Frame | Alive:
        item = await self._queue.get()
        if isinstance(item, LinkClosed):
            self._queue.put_nowait(item)  # closed stays closed for any later recv
            raise item
        return item

    async def post(self, conn_id: str, action: str, body: Frame, token: str) -> bool:
        url = f"{self.url.rstrip('/')}{self._path}/{quote(conn_id, safe='')}/{action}"
        try:
            r = await self._http.post(
                url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
        except (httpx.HTTPError, OSError) as e:
            log.info("sse %s POST failed: %r", action, e)
            return False
        if r.status_code >= 300:
            log.info("sse %s POST answered %s: %s", action, r.status_code, r.text[:200])
            return False
        return True

    async def close(self, code: int = 1000, reason: str = "client closed") -> None:
        del code, reason  # SSE has no close frame: dropping the stream is the close
        if self._closed:
            return
        self._closed = True
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        with contextlib.suppress(Exception):
            await self._resp.aclose()
        # Wake a recv() that waits right now; what was still queued is dropped on purpose.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(LinkClosed(None, "closed by client"))


async def _refusal(resp: httpx.Response) -> ConnectFailed:
    """An HTTP answer instead of a stream: map its error name to a close code when it has one."""
    try:
        body = await resp.aread()
    except httpx.HTTPError:
        body = b""
    finally:
        await resp.aclose()
    name = ""
    with contextlib.suppress(ValueError):
        obj = json.loads(body[:65536])
        if isinstance(obj, dict) and isinstance(obj.get("code"), str):
            name = obj["code"]
    code = code_for_name(name)
    if code is None and resp.status_code == 400:
        code = 4004  # bad_field: our query was refused; catalogue says back off and retry
    return ConnectFailed(f"sse refused: HTTP {resp.status_code} {name}".strip(), code)
