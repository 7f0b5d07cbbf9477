"""Actor method calls straight into the SDK's ActorRuntime, without FastAPI's routing.

daprd calls `PUT /actors/<type>/<id>/method/<name>` once per actor call. Through FastAPI that
request crossed seven middlewares, the router, dependency solving and a Response object before
reaching `ActorRuntime.dispatch`: about a third of the sessions host's CPU per call (py-spy,
docs/benchmarks.md). This thin ASGI layer serves exactly that route the way the SDK's DaprActor
route does (same dispatch, same 500 body on error) and hands everything else, activation,
deactivation, timers and /dapr/config included, to the FastAPI app. The caller must sit behind
DaprTokenMiddleware: only daprd may reach it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from dapr.actor.runtime.runtime import ActorRuntime
from dapr.clients.exceptions import DaprInternalError

from actors import metrics
from vocab.asgi_io import read_body, reply
from vocab.dapr_trust import ASGIApp, Receive, Scope, Send

log = logging.getLogger("actors.dispatch")

_REENTRANCY = b"dapr-reentrancy-id"
_OK_HEADERS = [(b"content-type", b"application/json; utf-8")]
_ERR_HEADERS = [(b"content-type", b"application/json")]


def actor_call(path: str) -> tuple[str, str, str] | None:
    """(type, id, method) of an actor method path, else None. Timer and reminder callbacks
    (`.../method/timer/<name>`) have one segment more and are not matched."""
    parts = path.split("/")
    if len(parts) != 6 or parts[1] != "actors" or parts[4] != "method" or not all(parts[2:]):
        return None
    return parts[2], parts[3], parts[5]


class ActorFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = None
        if scope["type"] == "http" and scope["method"] == "PUT":
            call = actor_call(scope["path"])
        if call is None:
            await self.app(scope, receive, send)
            return
        actor_type, actor_id, method = call
        reentrancy: Any = None
        for name, value in scope["headers"]:
            if name == _REENTRANCY:
                reentrancy = value.decode("latin-1")
        t0 = time.perf_counter()
        try:
            body = await read_body(receive)
            result = await ActorRuntime.dispatch(actor_type, actor_id, method, body, reentrancy)
        except DaprInternalError as ex:
            metrics.turn(actor_type, method, False, time.perf_counter() - t0)
            safe = ex.as_json_safe_dict()  # type: ignore[no-untyped-call]
            await reply(send, 500, json.dumps(safe).encode(), _ERR_HEADERS)
            return
        except Exception as ex:  # the SDK's route answers every failure with a 500, so do we
            metrics.turn(actor_type, method, False, time.perf_counter() - t0)
            log.warning("%s/%s.%s failed: %r", actor_type, actor_id, method, ex)
            err = {"message": repr(ex), "errorCode": "UNKNOWN"}
            await reply(send, 500, json.dumps(err).encode(), _ERR_HEADERS)
            return
        metrics.turn(actor_type, method, True, time.perf_counter() - t0)
        await reply(send, 200, result, _OK_HEADERS)
