"""Reading a request body and writing a whole response at the raw ASGI level, for the hot routes
served without FastAPI (actors/fast_dispatch.py; the gateway's topic and forward routes)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from vocab.dapr_trust import ASGIApp, Receive, Scope, Send

log = logging.getLogger("asgi")

# A route's handler: the whole body in, (status, JSON body) out.
PostHandler = Callable[[bytes], Awaitable[tuple[int, bytes]]]
_JSON = [(b"content-type", b"application/json")]


async def read_body(receive: Receive) -> bytes:
    """The whole body; ConnectionError when the caller went away before sending it."""
    chunks: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionError("the caller went away mid-request")
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


async def reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class PostRoutes:
    """ASGI: POSTs to the listed paths go straight to their handler, past FastAPI's routing
    (about a third of a gateway's CPU per delivered event went there: docs/benchmarks.md, step
    3); every other request goes to `app`. Must sit inside the token check that guards them."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, PostHandler]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.routes.get(scope["path"])
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive)
        except ConnectionError:
            return  # the caller went away; it retries what it got no answer for
        try:
            status, answer = await handler(body)
        except Exception:  # a bug: logged here, and the 500 makes the caller retry
            log.exception("POST %s failed", scope["path"])
            await reply(send, 500, b'{"error":"internal"}', _JSON)
            return
        await reply(send, status, answer, _JSON)
