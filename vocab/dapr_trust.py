"""The Dapr trust boundary: callback routes accept calls only from daprd.

daprd sends `dapr-api-token: $APP_API_TOKEN` on every call to its app. Neither DaprActor nor
DaprApp checks it, so this middleware does, in constant time. Browsers never hold the token, so
they cannot inject topic messages or call actor endpoints through the public port.
"""

import hmac
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = b"dapr-api-token"
INSECURE_ENV = "TASKSYNC_INSECURE_NO_APP_TOKEN"
log = logging.getLogger("vocab.trust")


def token_ok(expected: str | None, presented: bytes | None) -> bool:
    if not expected:
        return True  # no token configured: the middleware allows this only on explicit opt-in
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented)


class DaprTokenMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        protected_prefixes: tuple[str, ...],
        open_paths: tuple[str, ...] = (),
        token: str | None = None,
    ) -> None:
        self.app = app
        self.prefixes = protected_prefixes
        self.open_paths = open_paths
        self.token = token if token is not None else os.environ.get("APP_API_TOKEN")
        # Fail closed: without APP_API_TOKEN anyone reaching the port could inject events or call
        # actors. Only an explicit opt-in (a laptop without daprd tokens) turns the check off.
        self.open_without_token = not self.token and os.environ.get(INSECURE_ENV) == "1"
        if self.open_without_token:
            log.error("APP_API_TOKEN unset and %s=1: Dapr callback routes are OPEN", INSECURE_ENV)
        elif not self.token:
            log.error("APP_API_TOKEN unset: Dapr callback routes refuse every call")

    def _protected(self, path: str) -> bool:
        if path in self.open_paths:
            return False
        return any(path.startswith(p) for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._protected(scope["path"]):
            presented = dict(scope["headers"]).get(HEADER)
            if not (self.token or self.open_without_token) or not token_ok(self.token, presented):
                body = b'{"error":"forbidden","message":"Dapr callback routes accept only daprd"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
