"""Hostile HTTP below the app: slow-loris request heads, oversized heads, tokens in logged URLs,
and the Dapr token middleware when no token is configured.

The head guard runs in a real uvicorn server on an ephemeral port with a trivial app, so these
tests take a few seconds at most; tests/integration/test_security.py repeats the slow loris
against the real gateway."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from gateway.__main__ import RedactTokens, head_guard
from vocab.dapr_trust import INSECURE_ENV, DaprTokenMiddleware

HEAD_TIMEOUT = 0.6
MAX_HEAD = 2048


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def serve(max_head: int) -> AsyncIterator[int]:
    config = uvicorn.Config(ok_app, host="127.0.0.1", port=0, lifespan="off", log_level="error",
                            http=head_guard(HEAD_TIMEOUT, max_head), ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # bounded: 5 s
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    yield int(server.servers[0].sockets[0].getsockname()[1])
    server.should_exit = True
    await asyncio.wait_for(task, 5)


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async for p in serve(MAX_HEAD):
        yield p


@pytest.fixture
async def roomy_port() -> AsyncIterator[int]:
    """A guard limit above the WebSocket layer's, as in production (32 KiB vs 8 KiB lines)."""
    async for p in serve(1 << 20):
        yield p


async def read_all(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything until the server closes (bounded)."""
    out = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            out += chunk
    return out


REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_complete_request_is_served(port: int) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(REQUEST)
    assert (await r.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
    w.close()


async def test_silent_connection_gets_408_within_the_deadline(port: int) -> None:
    t0 = time.monotonic()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    got = await read_all(r, HEAD_TIMEOUT + 2)
    assert got.startswith(b"HTTP/1.1 408 Request Timeout")
    assert HEAD_TIMEOUT - 0.1 <= time.monotonic() - t0 <= HEAD_TIMEOUT + 1.5
    w.close()


async def test_dribbled_headers_get_408_although_bytes_keep_coming(port: int) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    t0 = time.monotonic()

    async def dribble() -> None:
        while True:
            w.write(b"X-Drip: 1\r\n")
            await asyncio.sleep(HEAD_TIMEOUT / 6)

    task = asyncio.create_task(dribble())
    try:
        got = await read_all(r, HEAD_TIMEOUT + 2)
    finally:
        task.cancel()
    assert got.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - t0 <= HEAD_TIMEOUT + 1.5
    w.close()


async def test_oversized_head_gets_431_before_the_deadline(port: int) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD + 100))
    got = await read_all(r, HEAD_TIMEOUT)  # well before the 408 would come
    assert got.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    w.close()


async def test_long_request_line_counts_too(port: int) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /?token=" + b"x" * (MAX_HEAD + 100))
    assert (await read_all(r, HEAD_TIMEOUT)).startswith(b"HTTP/1.1 431")
    w.close()


async def test_body_is_not_counted_as_head(port: int) -> None:
    body = b"x" * (MAX_HEAD * 20)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert (await r.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
    w.close()


async def test_each_keep_alive_request_head_is_bounded(port: int) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(REQUEST)
    assert (await r.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
    # The second request starts but never finishes its head: uvicorn's keep-alive timer was
    # cancelled by the first byte, so only the guard ends it.
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    assert (await read_all(r, HEAD_TIMEOUT + 2)).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - t0 <= HEAD_TIMEOUT + 1.5
    w.close()


async def test_slow_but_complete_head_within_deadline_is_served(port: int) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for part in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
        w.write(part)
        await asyncio.sleep(HEAD_TIMEOUT / 5)
    assert (await r.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
    w.close()


UPGRADE = (b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\n" + UPGRADE + b"\r\n", 101),
        # The WebSocket layer's own limits are stricter than the guard's (8 KiB per line, 128
        # headers) and it accepts GET without a body only: uvicorn never sent its refusal.
        (b"GET / HTTP/1.1\r\n" + UPGRADE + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + UPGRADE + b"".join(b"X-%d: 1\r\n" % i for i in range(130))
         + b"\r\n", 431),
        (b"GET /?token=" + b"t" * 8200 + b" HTTP/1.1\r\n" + UPGRADE + b"\r\n", 414),
        (b"POST / HTTP/1.1\r\n" + UPGRADE + b"\r\n", 405),
        (b"GET / HTTP/1.1\r\n" + UPGRADE + b"Content-Length: 2\r\n\r\n{}", 400),
    ],
    ids=["control-upgrade", "header-line-over-8k", "131-headers", "request-line-over-8k",
         "post-upgrade-405", "upgrade-with-body"],
)
async def test_upgrade_refused_by_websocket_layer_is_answered(head: bytes, status: int,
                                                              roomy_port: int) -> None:
    """Before the fix these heads got no answer at all and the socket stayed open forever."""
    r, w = await asyncio.open_connection("127.0.0.1", roomy_port)
    w.write(head)
    async with asyncio.timeout(HEAD_TIMEOUT / 2):  # an answer at once, not a deadline
        got = await r.readuntil(b"\r\n")
        assert got.startswith(b"HTTP/1.1 %d" % status), got
        if status != 101:
            await read_all(r, HEAD_TIMEOUT / 2)  # and the socket is closed
    w.close()


# -- tokens in logged URLs ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("msg", "args", "expected"),
    [
        ('%s - "%s %s HTTP/%s" %d',
         ("1.2.3.4:5", "GET", "/sse?device=d&token=eyJ.abc.def&since=e:1", "1.1", 200),
         '1.2.3.4:5 - "GET /sse?device=d&token=[redacted]&since=e:1 HTTP/1.1" 200'),
        ('%s - "WebSocket %s" [accepted]', ("1.2.3.4:5", "/ws?token=eyJ.abc.def"),
         '1.2.3.4:5 - "WebSocket /ws?token=[redacted]" [accepted]'),
        ("GET /ws?access_token=abc&x=1", (), "GET /ws?access_token=[redacted]&x=1"),
        ("GET /ws?TOKEN=abc", (), "GET /ws?TOKEN=[redacted]"),
        ("nothing to hide %s", ("here",), "nothing to hide here"),
    ],
    ids=["access-log", "websocket-log", "access_token", "upper-case", "untouched"],
)
def test_tokens_are_redacted_from_logs(msg: str, args: tuple[Any, ...], expected: str) -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, msg, args, None)
    assert RedactTokens().filter(record) is True
    assert record.getMessage() == expected
    if args:
        assert isinstance(record.args, tuple) and len(record.args) == len(args)  # shape kept


# -- Dapr token middleware without a token ------------------------------------------------------
async def call(mw: DaprTokenMiddleware, path: str, token: bytes | None) -> int:
    headers = [(b"dapr-api-token", token)] if token is not None else []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(m: Any) -> None:
        sent.append(m)

    await mw({"type": "http", "path": path, "headers": headers}, receive, send)
    return int(sent[0]["status"])


@pytest.mark.parametrize(
    ("configured", "insecure", "presented", "status"),
    [
        pytest.param("s3cret", None, b"s3cret", 200, id="token-ok"),
        pytest.param("s3cret", None, b"wrong", 403, id="token-wrong"),
        pytest.param("s3cret", None, None, 403, id="token-missing"),
        pytest.param("s3cret", "1", None, 403, id="opt-in-ignored-when-token-set"),
        pytest.param(None, None, None, 403, id="unset-fails-closed"),
        pytest.param(None, None, b"anything", 403, id="unset-fails-closed-any-token"),
        pytest.param(None, "1", None, 200, id="unset-with-explicit-opt-in"),
        pytest.param(None, "true", None, 403, id="opt-in-needs-exactly-1"),
    ],
)
async def test_middleware_fails_closed(monkeypatch: pytest.MonkeyPatch, configured: str | None,
                                       insecure: str | None, presented: bytes | None,
                                       status: int) -> None:
    monkeypatch.delenv("APP_API_TOKEN", raising=False)
    if configured is not None:
        monkeypatch.setenv("APP_API_TOKEN", configured)
    if insecure is None:
        monkeypatch.delenv(INSECURE_ENV, raising=False)
    else:
        monkeypatch.setenv(INSECURE_ENV, insecure)
    mw = DaprTokenMiddleware(ok_app, protected_prefixes=("/internal/",))  # type: ignore[arg-type]
    assert await call(mw, "/internal/dapr/task-updates", presented) == status
    # Public routes are never affected.
    assert await call(mw, "/healthz", None) == 200
