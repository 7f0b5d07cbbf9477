"""`GET /metrics` for every app, outermost in its ASGI stack, with one access rule for all.

The gateway's port is public (WebSocket/SSE), so its metrics must not be: they show load, replica
ids and failure rates. The rule is the one the `/internal/` routes already follow: the caller
presents `dapr-api-token: $APP_API_TOKEN` (constant-time compare). A scraper that can only send
an `Authorization` header (Prometheus' `authorization` scrape option) may instead present
`Authorization: Bearer $TASKSYNC_METRICS_TOKEN` when that variable is set: a read-only secret,
so the scraper need not hold the app token, which also admits Dapr callbacks. With neither token
configured the endpoint answers 403, unless `TASKSYNC_INSECURE_NO_APP_TOKEN=1` (laptop only), as
for the Dapr callback routes.

The rendering function is passed in, so this leaf module does not import prometheus_client.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from vocab.dapr_trust import HEADER, INSECURE_ENV, ASGIApp, Receive, Scope, Send

METRICS_PATH = "/metrics"
METRICS_TOKEN_ENV = "TASKSYNC_METRICS_TOKEN"
Render = Callable[[], tuple[bytes, str]]  # -> (body, content type)


def _same(expected: str | None, presented: bytes | None) -> bool:
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented)


class MetricsEndpoint:
    """Answers GET /metrics itself (after the token check); everything else goes to `app`."""

    def __init__(self, app: ASGIApp, render: Render, app_token: str | None = None,
                 metrics_token: str | None = None) -> None:
        self.app = app
        self.render = render
        env = os.environ.get
        self.app_token = app_token if app_token is not None else env("APP_API_TOKEN")
        self.metrics_token = (metrics_token if metrics_token is not None
                              else env(METRICS_TOKEN_ENV))
        self.open = not self.app_token and not self.metrics_token and env(INSECURE_ENV) == "1"

    def allowed(self, headers: dict[bytes, bytes]) -> bool:
        if self.open:
            return True
        if _same(self.app_token, headers.get(HEADER)):
            return True
        auth = headers.get(b"authorization", b"")
        return auth[:7].lower() == b"bearer " and _same(self.metrics_token, auth[7:].strip())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != METRICS_PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _reply(send, 405, b'{"error":"method_not_allowed"}', "application/json")
            return
        if not self.allowed(dict(scope["headers"])):
            body = b'{"error":"forbidden","message":"metrics need the app or metrics token"}'
            await _reply(send, 403, body, "application/json")
            return
        body, content_type = self.render()
        await _reply(send, 200, body if scope["method"] == "GET" else b"", content_type)


async def _reply(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode("latin-1")),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
