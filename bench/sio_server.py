"""The python-socketio peer: one ASGI app per uvicorn node, nodes joined by AsyncRedisManager.

Runs in the peers venv (never imported by the project): a client authenticates with an HS256 JWT
in the Socket.IO `auth` payload and joins the room named after its user id; events arrive from an
external emitter (AsyncRedisManager(write_only=True).emit(..., room=user)).

    <peers venv>/bin/python -m uvicorn bench.sio_server:app --port N
"""

import base64
import hashlib
import hmac
import inspect
import json
import os
import time
from typing import Any

import socketio  # type: ignore[import-not-found]

SECRET = os.environ["BENCH_SIO_SECRET"].encode()
mgr = socketio.AsyncRedisManager(os.environ["BENCH_SIO_REDIS"])
sio = socketio.AsyncServer(async_mode="asgi", client_manager=mgr, logger=False,
                           engineio_logger=False)
app = socketio.ASGIApp(sio)


def _b64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_hs256(token: str) -> str | None:
    try:
        head, body, sig = token.split(".")
        want = hmac.new(SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest()
        if json.loads(_b64(head)).get("alg") != "HS256" or not hmac.compare_digest(want, _b64(sig)):
            return None
        claims = json.loads(_b64(body))
        if float(claims.get("exp", 0)) < time.time():
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) and sub else None
    except (ValueError, TypeError, AttributeError):
        return None


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
    user = verify_hs256(auth.get("token", "")) if isinstance(auth, dict) else None
    if user is None:
        raise socketio.exceptions.ConnectionRefusedError("unauthorized")
    r = sio.enter_room(sid, user)
    if inspect.isawaitable(r):
        await r
