"""Security and hostile input through the real runtime (two gateways, sessions host, daprd, Redis).

Every test in this module is followed by a bystander check (autouse fixture): one user stays
connected on BOTH replicas for the whole module, and after each attack one more event is
published to it; both connections must get it with the next seq. An attack that wedged a replica,
the actors, the pub/sub consumer or the event loop fails the case it came from.

Attacks go to gw-a (and the sessions host), so gw-b's bystander connection is "the other
replica". Absence is proven with barrier events, never with sleeps: per-user seqs are delivered
in order, so when the barrier arrives as seq N, nothing else took a seq before it. Limits are the
small values of TEST_ENV (conftest.py): 4 connections per user, 3 s request-head deadline,
allowed origin https://app.example; the rest are the defaults (16 KiB frames, 256 filter items,
20 frames/s with a burst of 40, heartbeat 2 s)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import jwt
import msgpack
import pytest
import pytest_asyncio
import websockets
from cryptography.hazmat.primitives.asymmetric import rsa

from actors.wire import pack
from devtools.topology import Topology
from tests.integration.harness import SECRET, actor, event, gw_port, publish, redis_cli, token

HEADER_TIMEOUT = 3.0  # TASKSYNC_HEADER_TIMEOUT_SECONDS in TEST_ENV
MAX_CONNECTIONS = 4  # TASKSYNC_MAX_CONNECTIONS_PER_USER in TEST_ENV
ALLOWED_ORIGIN = "https://app.example"  # TASKSYNC_ALLOWED_ORIGINS in TEST_ENV
MSGPACK = "tasksync.msgpack.v1"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def decode(raw: str | bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw)
    return out


# -- clients ------------------------------------------------------------------------------------
class Ws:
    """A raw WebSocket client that answers server pings and reports exactly what it gets."""

    def __init__(self, ws: Any, enc: str) -> None:
        self.ws, self.enc = ws, enc
        self.welcome: dict[str, Any] = {}

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj) if self.enc == "json" else msgpack.packb(obj))

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        """The next frame other than a server ping (pings are answered)."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.01, deadline - time.monotonic())
            f = decode(await asyncio.wait_for(self.ws.recv(), left))
            if f.get("type") != "ping":
                return f
            await self.send({"type": "pong"})

    async def events(self, n: int, timeout: float = 20) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            f = await self.next(max(0.01, deadline - time.monotonic()))
            if "seq" in f and "data" in f:
                out.append(f)
        return out

    async def until_closed(self, timeout: float = 15) -> tuple[list[dict[str, Any]], int | None]:
        frames: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                frames.append(await self.next(max(0.01, deadline - time.monotonic())))
        except websockets.ConnectionClosed as e:
            return frames, e.rcvd.code if e.rcvd is not None else None

    async def alive(self) -> int | None:
        """None if the connection still answers a ping, else its close code."""
        marker = time.time()
        try:
            await self.send({"type": "ping", "ts": marker})
            while True:
                f = await self.next(10)
                if f.get("type") == "pong" and f.get("ts") == marker:
                    return None
        except websockets.ConnectionClosed as e:
            return e.rcvd.code if e.rcvd is not None else 1006

    async def close(self) -> None:
        await self.ws.close()


async def connect(
    topo: Topology,
    replica: str = "gw-a",
    user: str | None = None,
    *,
    tok: str | None = None,
    query: str = "",
    origin: str | None = None,
    enc: str = "json",
    headers: dict[str, str] | None = None,
) -> tuple[Ws | None, str]:
    """Open /ws; the answer is "ok:welcome", "close:<code>" (refused after the upgrade, as the
    transport does for every refusal) or "http:<status>" (refused before it)."""
    hdrs = dict(headers or {})
    if tok is None and user is not None:
        tok = token(user)
    if tok is not None:
        hdrs["Authorization"] = f"Bearer {tok}"
    url = f"ws://127.0.0.1:{gw_port(topo, replica)}/ws" + (f"?{query}" if query else "")
    try:
        raw = await websockets.connect(
            url, additional_headers=hdrs, origin=origin,
            subprotocols=[MSGPACK] if enc == "msgpack" else None,
            open_timeout=15, proxy=None,
        )
    except websockets.InvalidStatus as e:
        return None, f"http:{e.response.status_code}"
    c = Ws(raw, enc)
    try:
        first = await c.next(15)
    except websockets.ConnectionClosed as e:
        return None, f"close:{e.rcvd.code if e.rcvd else None}"
    if first.get("type") == "welcome":
        c.welcome = first
        return c, "ok:welcome"
    _, code = await c.until_closed()
    return None, f"close:{code}"


async def open_ok(topo: Topology, replica: str = "gw-a", user: str | None = None,
                  **kw: Any) -> Ws:
    c, answer = await connect(topo, replica, user or uid("atk"), **kw)
    assert c is not None, answer
    return c


class Sse:
    """GET /sse as a stream of data frames (a pump task reads it; None marks the end)."""

    def __init__(self, client: httpx.AsyncClient, resp: httpx.Response) -> None:
        self.client, self.resp = client, resp
        self.frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump())
        self.welcome: dict[str, Any] = {}

    @staticmethod
    async def open(topo: Topology, replica: str, tok: str, query: str = "",
                   headers: dict[str, str] | None = None) -> Sse:
        client = httpx.AsyncClient(timeout=httpx.Timeout(15, read=None))
        url = f"http://127.0.0.1:{gw_port(topo, replica)}/sse" + (f"?{query}" if query else "")
        req = client.build_request(
            "GET", url, headers={"Authorization": f"Bearer {tok}", **(headers or {})}
        )
        return Sse(client, await client.send(req, stream=True))

    async def _pump(self) -> None:
        try:
            if self.resp.status_code == 200:
                async for line in self.resp.aiter_lines():
                    if line.startswith("data: "):
                        await self.frames.put(json.loads(line[6:]))
        except httpx.HTTPError:
            pass
        finally:
            await self.frames.put(None)

    async def next(self, timeout: float = 10) -> dict[str, Any] | None:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def refused(self) -> str:
        body = json.loads(await self.resp.aread())
        return f"http:{self.resp.status_code}:{body['code']}"

    async def close(self) -> None:
        self.task.cancel()
        await self.resp.aclose()
        await self.client.aclose()


async def open_sse(topo: Topology, replica: str, user: str) -> Sse:
    s = await Sse.open(topo, replica, token(user))
    assert s.resp.status_code == 200, await s.refused()
    first = await s.next(15)
    assert first is not None and first["type"] == "welcome", first
    s.welcome = first
    return s


async def sse_post(topo: Topology, replica: str, conn_id: str, action: str, tok: str,
                   body: bytes | str = b"{}", client: httpx.AsyncClient | None = None) -> str:
    async with httpx.AsyncClient(timeout=15) as own:
        r = await (client or own).post(
            f"http://127.0.0.1:{gw_port(topo, replica)}/sse/{conn_id}/{action}", content=body,
            headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
        )
    if r.status_code == 200:
        return "http:200"
    return f"http:{r.status_code}:{r.json().get('code')}"


async def raw_http(port: int, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send bytes exactly as given (no client-side normalisation) and read until close."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(request)
        await w.drain()
        data = b""
        async with asyncio.timeout(timeout):
            while chunk := await r.read(65536):
                data += chunk
    finally:
        w.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


# -- the bystander --------------------------------------------------------------------------------
class Bystander:
    """One user on both replicas for the whole module; check() proves both still get events."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.seq = 0
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.conns: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, topo: Topology) -> None:
        for replica in ("gw-a", "gw-b"):
            ws = await websockets.connect(
                f"ws://127.0.0.1:{gw_port(topo, replica)}/ws?device=by-{replica}",
                additional_headers={"Authorization": f"Bearer {token(self.user, 6 * 3600)}"},
                open_timeout=15, proxy=None,
            )
            assert decode(await asyncio.wait_for(ws.recv(), 15))["type"] == "welcome"
            q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            self.queues[replica] = q
            self.conns.append(ws)
            self.tasks.append(asyncio.create_task(self._pump(ws, q)))

    @staticmethod
    async def _pump(ws: Any, q: asyncio.Queue[dict[str, Any]]) -> None:
        try:
            async for raw in ws:
                f = decode(raw)
                if f.get("type") == "ping":
                    await ws.send('{"type":"pong"}')
                elif "seq" in f and "data" in f:
                    q.put_nowait(f)
        except websockets.ConnectionClosed:
            pass
        finally:
            q.put_nowait({"type": "closed", "code": ws.close_code})

    async def check(self, topo: Topology) -> None:
        self.seq += 1
        ev = event("task_updated", self.seq, audience=[self.user])
        await publish(topo, ev)
        for replica, q in self.queues.items():
            f = await asyncio.wait_for(q.get(), 20)
            assert f.get("type") != "closed", f"bystander on {replica} was disconnected: {f}"
            assert (f["seq"], f["id"]) == (self.seq, ev["event_id"]), (replica, f)

    async def stop(self) -> None:
        for ws in self.conns:
            await ws.close()
        for t in self.tasks:
            t.cancel()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bystander(topo: Topology) -> AsyncIterator[Bystander]:
    b = Bystander(uid("bystander"))
    await b.start(topo)
    await b.check(topo)
    yield b
    await b.stop()


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def bystander_keeps_receiving(topo: Topology, bystander: Bystander) -> AsyncIterator[None]:
    yield
    await bystander.check(topo)


# -- tokens -------------------------------------------------------------------------------------
def b64(d: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def claims(user: str, **kw: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "iat": now, "exp": now + 600, **kw}


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
Tok = Callable[[str], str]


def forged_token(u: str) -> str:
    return jwt.encode(claims(u), "not-the-secret-not-the-secret-000", algorithm="HS256")


def alg_none_token(u: str) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(u))}."


def missing_sub_token(u: str) -> str:
    return jwt.encode({"exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def expired_token(u: str) -> str:
    return token(u, ttl=-60)


def not_yet_valid_token(u: str) -> str:
    return jwt.encode(claims(u, nbf=int(time.time()) + 600), SECRET, algorithm="HS256")


def rs256_unconfigured_token(u: str) -> str:  # only the HS256 secret is configured
    return jwt.encode(claims(u), RSA_KEY, algorithm="RS256")


def oversized_token(u: str) -> str:
    return "e" * 9000


def sub_too_long_token(u: str) -> str:
    return jwt.encode(claims("u" * 129), SECRET, algorithm="HS256")


# -- attacks: each returns the answer it observed -------------------------------------------------
Attack = Callable[[Topology], Awaitable[str]]


def frame(raw: str | bytes, enc: str = "json", text: bool | None = None) -> Attack:
    """Send one frame on a fresh connection. Answer: the first reply, plus the close code when
    the connection did not survive it."""

    async def attack(topo: Topology) -> str:
        c = await open_ok(topo, enc=enc)
        await c.ws.send(raw, text=text)
        try:
            f = await c.next(10)
        except websockets.ConnectionClosed as e:
            return f"close:{e.rcvd.code if e.rcvd else None}"
        answer = f"error:{f['code']}" if f["type"] == "error" else f"ok:{f['type']}"
        if (code := await c.alive()) is not None:
            return f"{answer}+close:{code}"
        await c.close()
        return answer

    return attack


def handshake(tok: Tok | None = None, query: str = "", origin: str | None = None,
              in_query: bool = False) -> Attack:
    """Connect with a (hostile) token in the Authorization header, or in ?token= only."""

    async def attack(topo: Topology) -> str:
        u = uid("hs")
        t = tok(u) if tok else token(u)
        q = "&".join(x for x in (query, f"token={t}" if in_query else "") if x)
        c, answer = await connect(topo, "gw-a", None, tok=None if in_query else t, query=q,
                                  origin=origin)
        if c is not None:
            await c.close()
        return answer

    return attack


def no_token() -> Attack:
    async def attack(topo: Topology) -> str:
        c, answer = await connect(topo, "gw-a", None)
        assert c is None
        return answer

    return attack


def echo_filter(value: str) -> Attack:
    """Unicode edge cases are data, not code: accepted, stored as is, echoed back escaped."""

    async def attack(topo: Topology) -> str:
        c = await open_ok(topo)
        await c.send({"type": "subscribe", "filters": {"task_ids": [value, "plain"]}})
        f = await c.next()
        await c.close()
        if f["type"] == "subscribed" and set(f["filters"]["task_ids"]) == {value, "plain"}:
            return "ok:subscribed"
        return f"unexpected:{f}"

    return attack


async def huge_frame(topo: Topology) -> str:
    return await frame("x" * 20_000)(topo)


async def deflate_bomb(topo: Topology) -> str:
    """1 MB of spaces compresses to ~1 KB on the wire; the server must stop inflating at the
    frame limit, not after."""
    c = await open_ok(topo)
    assert c.ws.protocol.extensions, "permessage-deflate not negotiated: not a bomb"
    await c.ws.send('{"type":"ping","pad":"' + " " * 1_000_000 + '"}')
    _, code = await c.until_closed()
    return f"close:{code}"


async def ping_flood(topo: Topology) -> str:
    c = await open_ok(topo)
    for _ in range(100):
        await c.ws.send('{"type":"ping"}')
    frames, code = await c.until_closed()
    pongs = sum(1 for f in frames if f["type"] == "pong")
    assert 40 <= pongs < 100, pongs  # the burst is served, the flood is not
    errors = sorted({f["code"] for f in frames if f["type"] == "error"})
    return f"error:{'+'.join(errors)}+close:{code}"


async def repeated_malformed(topo: Topology) -> str:
    c = await open_ok(topo)
    for _ in range(12):
        await c.ws.send("{")
    frames, code = await c.until_closed()
    errors = sorted({f["code"] for f in frames if f["type"] == "error"})
    return f"error:{'+'.join(errors)}+close:{code}"


async def oversized_filter(topo: Topology) -> str:
    return await frame(json.dumps(
        {"type": "subscribe", "filters": {"task_ids": [str(i) for i in range(257)]}}
    ))(topo)


def refresh_with(tok: Tok, victim: bool = False) -> Attack:
    async def attack(topo: Topology) -> str:
        u = uid("refresh")
        c = await open_ok(topo, user=u)
        await c.send({"type": "refresh", "token": tok(uid("victim") if victim else u)})
        f = await c.next()
        answer = f"error:{f['code']}" if f["type"] == "error" else f"ok:{f['type']}"
        if (code := await c.alive()) is not None:
            return f"{answer}+close:{code}"
        await c.close()
        return answer

    return attack


async def bad_refresh_does_not_extend(topo: Topology) -> str:
    u = uid("refresh")
    c = await open_ok(topo, user=u, tok=token(u, ttl=3))
    await c.send({"type": "refresh", "token": token(uid("victim"), ttl=3600)})
    frames, code = await c.until_closed(15)
    errors = sorted({f["code"] for f in frames if f["type"] == "error"})
    return f"error:{'+'.join(errors)}+close:{code}"


async def too_many_connections(topo: Topology) -> str:
    u = uid("many")
    conns = [await open_ok(topo, ("gw-a", "gw-b")[i % 2], u) for i in range(MAX_CONNECTIONS)]
    meta = (await actor(topo, "UserSession", u, "inspect"))["meta"]
    assert len(meta["conns"]) == MAX_CONNECTIONS  # the sessions host got the env limit
    extra, answer = await connect(topo, "gw-a", u)
    assert extra is None
    # Per user and released on close: after one closes, a new one gets in (bounded retry:
    # the detach reaches the actor asynchronously).
    await conns.pop().close()
    deadline = time.monotonic() + 15
    while (got := await connect(topo, "gw-b", u))[0] is None:
        assert time.monotonic() < deadline, got[1]
        await asyncio.sleep(0.2)
    conns.append(got[0])
    for c in conns:
        await c.close()
    return answer


async def slow_loris(topo: Topology) -> str:
    """Open TCP, then dribble upgrade headers: one line every 0.3 s, never the blank line."""
    r, w = await asyncio.open_connection("127.0.0.1", gw_port(topo, "gw-a"))
    t0 = time.monotonic()
    w.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")

    async def dribble() -> None:
        while True:
            await asyncio.sleep(0.3)
            w.write(b"X-Drip: 1\r\n")

    task = asyncio.create_task(dribble())
    try:
        data = b""
        async with asyncio.timeout(HEADER_TIMEOUT + 5):
            while chunk := await r.read(65536):
                data += chunk
    finally:
        task.cancel()
        w.close()
    took = time.monotonic() - t0
    assert HEADER_TIMEOUT - 0.5 <= took <= HEADER_TIMEOUT + 2, took
    return f"http:{int(data.split(b' ', 2)[1])}"


async def idle_tcp(topo: Topology) -> str:
    status, _ = await raw_http(gw_port(topo, "gw-a"), b"", timeout=HEADER_TIMEOUT + 5)
    return f"http:{status}"


async def oversized_head(topo: Topology) -> str:
    status, _ = await raw_http(
        gw_port(topo, "gw-a"),
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 40_000 + b"\r\n",
        timeout=HEADER_TIMEOUT - 1,  # refused on size, before the deadline
    )
    return f"http:{status}"


async def invalid_http(topo: Topology) -> str:
    status, _ = await raw_http(gw_port(topo, "gw-a"), b"GARBAGE\x00\xff\r\n\r\n")
    return f"http:{status}"


def sse_handshake(tok: Tok, query: str = "", headers: dict[str, str] | None = None) -> Attack:
    async def attack(topo: Topology) -> str:
        s = await Sse.open(topo, "gw-a", tok(uid("sse")), query, headers)
        try:
            if s.resp.status_code == 200:
                return "http:200"
            return await s.refused()
        finally:
            await s.close()

    return attack


def sse_body(body: bytes | str, action: str = "ack", times: int = 1) -> Attack:
    """POST to the attacker's own SSE connection (`times` at once); the first refusal."""

    async def attack(topo: Topology) -> str:
        u = uid("ssepost")
        s = await open_sse(topo, "gw-a", u)
        try:
            async with httpx.AsyncClient(timeout=15) as client:
                answers = await asyncio.gather(*(
                    sse_post(topo, "gw-a", s.welcome["conn_id"], action, token(u), body, client)
                    for _ in range(times)))
            # the stream itself is unharmed
            assert await sse_post(topo, "gw-a", s.welcome["conn_id"], "ping", token(u)) in (
                "http:200", "http:429:rate_limited")
        finally:
            await s.close()
        return next((a for a in answers if a != "http:200"), "http:200")

    return attack


async def sse_slow_body(topo: Topology) -> str:
    """An authenticated POST whose body dribbles: cut off at the deadline, not held forever."""
    u = uid("sseslow")
    s = await open_sse(topo, "gw-a", u)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", gw_port(topo, "gw-a"))
        w.write(f"POST /sse/{s.welcome['conn_id']}/ack HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token(u)}\r\nContent-Type: application/json\r\n"
                f"Content-Length: 100\r\n\r\n{{".encode())
        t0 = time.monotonic()

        async def dribble() -> None:
            while True:
                await asyncio.sleep(0.3)
                w.write(b" ")

        task = asyncio.create_task(dribble())
        try:
            async with asyncio.timeout(HEADER_TIMEOUT + 5):
                head = await r.readuntil(b"\r\n")
        finally:
            task.cancel()
            w.close()
        assert time.monotonic() - t0 <= HEADER_TIMEOUT + 2
        return f"http:{int(head.split(b' ', 2)[1])}"
    finally:
        await s.close()


async def sse_declared_huge(topo: Topology) -> str:
    """Content-Length of 1 GB: refused from the header, nothing is read or buffered."""
    u = uid("ssehuge")
    s = await open_sse(topo, "gw-a", u)
    try:
        status, _ = await raw_http(gw_port(topo, "gw-a"), (
            f"POST /sse/{s.welcome['conn_id']}/ack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: Bearer {token(u)}\r\nContent-Length: 1000000000\r\n\r\n{{}}"
        ).encode())
    finally:
        await s.close()
    return f"http:{status}"


async def cross_user_sse_post(topo: Topology) -> str:
    """Another user's SSE conn_id, on its replica and on the other one: 404 for every action,
    the same answer as for an id that doesn't exist."""
    victim, attacker = uid("victim"), uid("attacker")
    s = await open_sse(topo, "gw-a", victim)
    try:
        cid, tok = s.welcome["conn_id"], token(attacker)
        answers = {
            await sse_post(topo, replica, cid, action, tok, body)
            for replica in ("gw-a", "gw-b")
            for action, body in (
                ("ack", '{"seq": 1}'),
                ("subscribe", '{"filters": {"types": ["task_deleted"]}, "scope": "user"}'),
                ("unsubscribe", '{"scope": "user"}'),
            )
        }
        answers.add(await sse_post(topo, "gw-a", "gw-a.doesnotexist", "ack", tok, '{"seq":1}'))
        # The victim's stream and filters are untouched: the barrier arrives unfiltered.
        await publish(topo, event("task_created", 1, audience=[victim]))
        ev = await s.next(15)
        assert ev is not None and (ev["seq"], ev["type"]) == (1, "task_created"), ev
    finally:
        await s.close()
    return "+".join(sorted(answers))


async def cross_user_fields(topo: Topology) -> str:
    """Frames that name the victim in every plausible field only ever reach the sender's own
    actor (the user is the token's sub, held by the connection)."""
    victim, attacker = uid("victim"), uid("attacker")
    v = await open_ok(topo, "gw-b", victim, query="device=phone")
    await publish(topo, event("task_created", 1, audience=[victim]))
    (first,) = await v.events(1)
    await v.send({"type": "ack", "seq": first["seq"]})
    a = await open_ok(topo, "gw-a", attacker, query="device=phone")
    naming = {"user": victim, "sub": victim, "user_id": victim, "conn_id": v.welcome["conn_id"]}
    await a.send({"type": "subscribe", "scope": "user",
                  "filters": {"types": ["task_deleted"]}, **naming})
    sub = await a.next()
    await a.send({"type": "ack", "seq": 999, "device": "phone", **naming})
    await a.send({"type": "unsubscribe", "scope": "connection", **naming})
    assert (await a.next())["type"] == "subscribed"
    # The victim still gets every type (its filter was not set) ...
    await publish(topo, event("task_updated", 2, audience=[victim]))
    (barrier,) = await v.events(1)
    assert (barrier["seq"], barrier["type"]) == (2, "task_updated")
    vmeta = (await actor(topo, "UserSession", victim, "inspect"))["meta"]
    ameta = (await actor(topo, "UserSession", attacker, "inspect"))["meta"]
    for c in (a, v):
        await c.close()
    ok = (sub["type"] == "subscribed" and sub["scope"] == "user"
          and vmeta["filters"]["types"] is None and ameta["filters"]["types"] == ["task_deleted"]
          and vmeta["devices"].get("phone", {}).get("seq", 0) <= 1)
    return "own-actor-only" if ok else f"leak? victim={vmeta} attacker={ameta}"


async def cross_user_attach(topo: Topology) -> str:
    """The attacker presents the victim's device id and the victim's position: it gets its own
    log (epoch mismatch -> resync), never the victim's events."""
    victim, attacker = uid("victim"), uid("attacker")
    v = await open_ok(topo, "gw-b", victim, query="device=laptop")
    epoch = v.welcome["epoch"]
    await publish(topo, event("task_created", 1, audience=[victim]))
    await v.events(1)
    a = await open_ok(topo, "gw-a", attacker, query=f"device=laptop&since={epoch}:0")
    resync = await a.next()
    # Barrier: one more victim event, then one attacker event; the attacker's first event
    # must be its own barrier at seq 1.
    await publish(topo, event("task_updated", 2, audience=[victim]))
    await publish(topo, event("task_updated", 3, audience=[attacker]))
    (mine,) = await a.events(1)
    assert (mine["seq"], mine["data"]["id"]) == (1, 3), mine
    assert resync["epoch"] != epoch
    for c in (a, v):
        await c.close()
    return f"{resync['type']}:{resync.get('reason')}"


# -- the table ----------------------------------------------------------------------------------
HOSTILE: list[tuple[str, str, Attack]] = [
    # malformed frames: refused with an error frame, the connection stays usable
    ("malformed-json", "error:bad_frame", frame('{"type": "ack",')),
    ("binary-junk-on-json-connection", "error:bad_frame", frame(b"\x00\xff\xfe\x80\xc1")),
    ("text-frame-on-msgpack-connection", "error:bad_frame", frame('{"type":"ping"}', "msgpack")),
    ("msgpack-header-announcing-4g-map", "error:bad_frame",
     frame(b"\xdf\xff\xff\xff\xff", "msgpack")),
    ("deep-nesting-6000", "error:bad_frame",
     frame('{"type":"ack","seq":1,"x":' + "[" * 6000 + "]" * 6000 + "}")),
    ("nesting-one-over-the-limit", "error:bad_frame",
     frame('{"type":"ack","seq":1,"x":' + "[" * 8 + "]" * 8 + "}")),
    ("duplicate-keys", "error:bad_frame", frame('{"type":"ack","seq":1,"seq":2}')),
    ("wrong-type-seq-string", "error:bad_field", frame('{"type":"ack","seq":"1"}')),
    ("wrong-type-type-number", "error:unknown_type", frame('{"type":5}')),
    ("wrong-type-filters-list", "error:bad_field", frame('{"type":"subscribe","filters":[]}')),
    ("wrong-type-ts-nan", "error:bad_field", frame('{"type":"ping","ts":NaN}')),
    ("seq-5000-digits", "error:bad_frame", frame('{"type":"ack","seq":' + "9" * 5000 + "}")),
    # unicode edge cases
    ("lone-surrogate-escape", "error:bad_frame",
     frame('{"type":"refresh","token":"\\ud800"}')),
    ("invalid-utf8-in-text-frame", "close:1007",
     frame(b'{"type":"ping","x":"\xff\xfe"}', text=True)),
    ("utf8-bom-before-json", "error:bad_frame", frame('\ufeff{"type":"ping"}')),
    ("rtl-override-in-type", "error:unknown_type", frame('{"type":"\u202eack","seq":1}')),
    ("nul-in-filter-id", "ok:subscribed", echo_filter("a\x00b")),
    ("rtl-override-in-filter-id", "ok:subscribed", echo_filter("\u202eexe.txt")),
    ("rtl-override-in-device-id", "close:4004", handshake(query="device=%E2%80%AEabc")),
    ("nul-in-device-id", "close:4004", handshake(query="device=a%00b")),
    ("garbage-since-position", "close:4004", handshake(query="since=%00%FF")),
    # size and rate limits
    ("huge-frame-20kb", "close:1009", huge_frame),
    ("deflate-bomb-1mb", "close:1009", deflate_bomb),
    ("oversized-filter-257-items", "error:filter_too_large", oversized_filter),
    ("ping-flood-100", "error:rate_limited+close:4008", ping_flood),
    ("repeated-malformed-frames", "error:bad_frame+close:4004", repeated_malformed),
    ("too-many-connections", "close:4009", too_many_connections),
    # slow and oversized handshakes
    ("slow-loris-handshake", "http:408", slow_loris),
    ("idle-tcp-connection", "http:408", idle_tcp),
    ("oversized-request-head-40kb", "http:431", oversized_head),
    ("invalid-http", "http:400", invalid_http),
    # tokens
    ("no-token", "close:4001", no_token()),
    ("forged-signature", "close:4001", handshake(forged_token)),
    ("forged-token-in-query", "close:4001",
     handshake(forged_token, in_query=True)),
    ("alg-none-token-in-query", "close:4001", handshake(alg_none_token, in_query=True)),
    ("expired-token", "close:4002", handshake(expired_token)),
    ("alg-none-token", "close:4001", handshake(alg_none_token)),
    ("missing-sub", "close:4001", handshake(missing_sub_token)),
    ("sub-too-long", "close:4001", handshake(sub_too_long_token)),
    # the sub is the actor id: refused up front instead of a daprd 400 and a misleading 4503
    ("sub-dot-dot", "close:4001", handshake(lambda u: token(".."))),
    ("sub-with-slash", "close:4001", handshake(lambda u: token(f"{u}/method/deliver"))),
    ("sub-with-newline", "close:4001", handshake(lambda u: token(f"{u}\nforged log line"))),
    ("sub-with-nul", "close:4001", handshake(lambda u: token(f"{u}\x00"))),
    ("not-yet-valid-token", "close:4001", handshake(not_yet_valid_token)),
    ("rs256-token-without-public-key", "close:4001", handshake(rs256_unconfigured_token)),
    # An 8 KiB header line / request line is the WebSocket layer's limit (HTTP 431 / 414).
    ("oversized-token-9000", "http:431", handshake(oversized_token)),
    ("oversized-token-in-query-9000", "http:414", handshake(oversized_token, in_query=True)),
    ("token-just-under-the-line-limit", "close:4001",
     handshake(lambda u: "e" * 8100)),
    ("refresh-with-forged-token", "error:bad_token", refresh_with(forged_token)),
    ("refresh-with-expired-token", "error:bad_token", refresh_with(expired_token)),
    ("refresh-with-alg-none", "error:bad_token", refresh_with(alg_none_token)),
    ("refresh-bad-token-does-not-extend", "error:bad_token+close:4002",
     bad_refresh_does_not_extend),
    # origins
    ("foreign-origin", "close:4003", handshake(origin="https://evil.example")),
    ("null-origin", "close:4003", handshake(origin="null")),
    ("look-alike-origin", "close:4003", handshake(origin="https://app.example.evil.example")),
    ("allowlisted-origin-control", "ok:welcome", handshake(origin=ALLOWED_ORIGIN)),
    # SSE
    ("sse-forged-token", "http:401:unauthorized", sse_handshake(forged_token)),
    ("sse-expired-token", "http:401:token_expired", sse_handshake(expired_token)),
    ("sse-alg-none-token", "http:401:unauthorized", sse_handshake(alg_none_token)),
    ("sse-foreign-origin", "http:403:forbidden_origin",
     sse_handshake(token, headers={"Origin": "https://evil.example"})),
    ("sse-rtl-override-in-device-id", "http:400:bad_field",
     sse_handshake(token, query="device=%E2%80%AEabc")),
    ("sse-bad-last-event-id", "http:400:bad_field",
     sse_handshake(token, headers={"Last-Event-ID": "1:2:<script>"})),
    ("sse-post-huge-body", "http:413:frame_too_large",
     sse_body('{"seq": 1, "pad": "' + "x" * 20_000 + '"}')),
    ("sse-post-declares-1gb", "http:413", sse_declared_huge),
    ("sse-post-deep-nesting", "http:400:bad_frame",
     sse_body('{"seq":1,"x":' + "[" * 6000 + "]" * 6000 + "}")),
    ("sse-post-not-an-object", "http:400:bad_frame", sse_body("[1, 2]")),
    ("sse-post-binary-junk", "http:400:bad_frame", sse_body(b"\x00\xff\xfe")),
    ("sse-post-lone-surrogate", "http:400:bad_frame",
     sse_body('{"filters": {"task_ids": ["\\udc00"]}}', action="subscribe")),
    ("sse-post-wrong-type", "http:400:bad_field", sse_body('{"seq": "1"}')),
    ("sse-post-oversized-filter", "http:400:filter_too_large",
     sse_body(json.dumps({"filters": {"task_ids": [str(i) for i in range(257)]}}),
              action="subscribe")),
    ("sse-post-flood-80", "http:429:rate_limited", sse_body('{"seq": 0}', times=80)),
    ("sse-post-slow-body", "http:408", sse_slow_body),
    # cross-user
    ("cross-user-sse-post", "http:404:not_found", cross_user_sse_post),
    ("cross-user-fields-in-frames", "own-actor-only", cross_user_fields),
    ("cross-user-attach-victims-device-and-position", "resync_required:epoch_mismatch",
     cross_user_attach),
    ("cross-user-refresh-with-victims-token", "error:bad_token",
     refresh_with(token, victim=True)),
]


@pytest.mark.parametrize(("expected", "attack"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])
async def test_hostile_input(topo: Topology, expected: str, attack: Attack) -> None:
    assert await attack(topo) == expected


# -- token lifetime while connected -------------------------------------------------------------
async def test_token_expiring_while_connected_closes_4002(topo: Topology) -> None:
    u = uid("exp")
    tok = token(u, ttl=3)
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    c = await open_ok(topo, user=u, tok=tok)
    _, code = await c.until_closed(15)
    assert code == 4002
    # Bounded by the expiry itself, not by the heartbeat period.
    assert time.time() - exp < 1.5


async def test_refresh_extends_the_connection_past_the_first_expiry(topo: Topology) -> None:
    u = uid("refresh")
    tok = token(u, ttl=3)
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    c = await open_ok(topo, user=u, tok=tok)
    await c.send({"type": "refresh", "token": token(u, ttl=3600)})
    # Stay connected (answering pings) until well past the first token's expiry.
    while time.time() < exp + 2:
        assert await c.alive() is None, "closed although the token was refreshed"
        await asyncio.sleep(0.5)
    await publish(topo, event("task_created", 1, audience=[u]))
    (ev,) = await c.events(1)
    assert ev["seq"] == 1
    await c.close()


async def test_sse_stream_ends_with_token_expired(topo: Topology) -> None:
    u = uid("sseexp")
    tok = token(u, ttl=3)
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    s = await Sse.open(topo, "gw-b", tok)
    frames = []
    try:
        while (f := await s.next(15)) is not None:
            frames.append(f)
    finally:
        await s.close()
    assert frames[0]["type"] == "welcome"
    assert frames[-1] == {"type": "error", "code": "token_expired",
                          "message": "refresh the token, then reconnect"}
    # SSE checks between frames: bounded by the heartbeat (2 s) after the expiry.
    assert time.time() - exp < 2 + 1.5


# -- the Dapr trust boundary --------------------------------------------------------------------
def forged_bodies(victim: str, conn_id: str, epoch: str) -> dict[str, bytes]:
    injected = {"id": "forged-1", "type": "task_created", "data": {"id": 666, "title": "pwned"},
                "task_id": "666", "list_id": None}
    return {
        "event": json.dumps({
            "specversion": "1.0", "id": uuid.uuid4().hex, "source": "evil", "topic": "task-updates",
            "pubsubname": "pubsub", "type": "com.dapr.event.sent",
            "data": {"event_id": "forged-1", "type": "task_created", "audience": [victim],
                     "data": {"id": 666, "title": "pwned"}},
        }).encode(),
        # What another replica forwards: straight into the victim's connection.
        "forward": pack({"from": "gw-b", "items": [
            {"user": victim, "conns": [conn_id], "epoch": epoch,
             "record": {**injected, "seq": 1, "ts": 0.0}}]}),
        "deliver": pack({"events": [injected]}),
        "attach": pack({"conn": "forged", "replica": "gw-a", "device": "x", "since": None}),
        "empty": pack({}),
        "none": b"",
    }


TRUST: list[tuple[str, str, str, str, str | None, str, int]] = [
    # (id, app, method, path, token, body, status); {v} = the victim's user id
    ("task-updates-no-token", "gw-a", "POST", "/internal/dapr/task-updates", None, "event", 403),
    ("task-updates-wrong-token", "gw-a", "POST", "/internal/dapr/task-updates", "wrong", "event",
     403),
    ("task-updates-empty-token", "gw-b", "POST", "/internal/dapr/task-updates", "", "event", 403),
    ("task-updates-app-to-daprd-token", "gw-a", "POST", "/internal/dapr/task-updates", "api",
     "event", 403),
    ("replica-forward-no-token", "gw-a", "POST", "/internal/forward", None, "forward", 403),
    ("replica-forward-wrong-token", "gw-a", "POST", "/internal/forward", "wrong", "forward",
     403),
    ("dapr-subscribe-no-token", "gw-a", "GET", "/dapr/subscribe", None, "none", 403),
    ("dapr-config-no-token", "gw-a", "GET", "/dapr/config", None, "none", 403),
    ("internal-connections-no-token", "gw-b", "GET", "/internal/connections", None, "none", 403),
    ("internal-stats-wrong-token", "gw-a", "GET", "/internal/stats", "wrong", "none", 403),
    ("percent-encoded-prefix", "gw-a", "POST", "/%69nternal/dapr/task-updates", None, "event",
     403),
    ("dot-segment", "gw-a", "POST", "/internal/./dapr/task-updates", None, "event", 403),
    ("trailing-slash", "gw-a", "POST", "/internal/dapr/task-updates/", None, "event", 403),
    ("double-slash-no-route", "gw-a", "POST", "//internal/dapr/task-updates", None, "event", 404),
    ("upper-case-no-route", "gw-a", "POST", "/INTERNAL/dapr/task-updates", None, "event", 404),
    ("actor-deliver-no-token", "sessions", "PUT", "/actors/UserSession/{v}/method/deliver", None,
     "deliver", 403),
    ("actor-deliver-wrong-token", "sessions", "PUT", "/actors/UserSession/{v}/method/deliver",
     "wrong", "deliver", 403),
    ("actor-deliver-app-to-daprd-token", "sessions", "PUT",
     "/actors/UserSession/{v}/method/deliver", "api", "deliver", 403),
    ("actor-attach-no-token", "sessions", "PUT", "/actors/UserSession/{v}/method/attach", None,
     "attach", 403),
    ("actor-deactivate-no-token", "sessions", "DELETE", "/actors/UserSession/{v}", None, "none",
     403),
    ("registry-snapshot-no-token", "sessions", "PUT",
     "/actors/ReplicaRegistry/default/method/snapshot", None, "empty", 403),
    ("sessions-dapr-config-no-token", "sessions", "GET", "/dapr/config", None, "none", 403),
    # Controls: the 403s above come from the token check, not from a missing route.
    ("control-stats-with-app-token", "gw-a", "GET", "/internal/stats", "app", "none", 200),
    ("control-subscribe-with-app-token", "gw-b", "GET", "/dapr/subscribe", "app", "none", 200),
    ("control-sessions-healthz-is-open", "sessions", "GET", "/healthz", None, "none", 200),
]


@pytest.mark.parametrize(("app", "method", "path", "tok", "body", "status"),
                         [t[1:] for t in TRUST], ids=[t[0] for t in TRUST])
async def test_dapr_routes_refuse_public_callers(
    topo: Topology, app: str, method: str, path: str, tok: str | None, body: str, status: int
) -> None:
    victim = uid("victim")
    v = await open_ok(topo, "gw-a", victim)
    data = forged_bodies(victim, v.welcome["conn_id"], v.welcome["epoch"])[body]
    port = topo.apps["sessions-s1" if app == "sessions" else f"gateway-{app}"].app_port
    presented = {"app": topo.app_token, "api": topo.api_token, "wrong": "x" * 32}.get(
        tok or "", tok)
    head = f"{method} {path.format(v=victim)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if presented is not None:
        head += f"dapr-api-token: {presented}\r\n"
    got, _ = await raw_http(port, head.encode() + b"Content-Length: %d\r\n\r\n" % len(data) + data)
    assert got == status
    # Nothing reached the victim, neither live nor in its log: the barrier is its seq 1.
    await publish(topo, event("task_updated", 777, audience=[victim]))
    (ev,) = await v.events(1)
    assert (ev["seq"], ev["data"]["id"]) == (1, 777), ev
    await v.close()


# -- topic input: dead-lettered, not retried, never blocking --------------------------------------
def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def payload(marker: str, **over: Any) -> bytes:
    body: dict[str, Any] = {"event_id": marker, "type": "task_created",
                            "data": {"id": 1, "title": "t"}}
    body.update(over)
    return json.dumps(body).encode()


TOPIC: list[tuple[str, Callable[[str], bytes], str, str]] = [
    # (id, body(marker), content type, reason logged by the gateway)
    ("not-a-json-object", lambda m: json.dumps([m]).encode(), "application/json", "bad_envelope"),
    ("not-json-at-all", lambda m: f"<xml>{m}</xml>".encode(), "text/plain", "bad_json"),
    ("unknown-type", lambda m: payload(m, type="task_exploded"), "application/json",
     "unknown_type"),
    ("rtl-override-in-type", lambda m: payload(m, type="\u202etask_created"), "application/json",
     "unknown_type"),
    ("missing-data-id", lambda m: payload(m, data={"title": "no id"}), "application/json",
     "bad_task_id"),
    ("unknown-top-level-field", lambda m: payload(m, user_id="mallory"), "application/json",
     "unknown_field"),
    ("bad-audience-id", lambda m: payload(m, audience=["bad user!"]), "application/json",
     "bad_audience"),
    ("audience-wildcard", lambda m: payload(m, audience=["*"]), "application/json",
     "bad_audience"),
    ("oversized-70kb", lambda m: payload(m, data={"id": 1, "t": "x" * 70_000}),
     "application/json", "too_large"),
    ("nested-20-levels", lambda m: payload(m, data={"id": 1, "x": json.loads(deep(20))}),
     "application/json", "too_deep"),
    # The reported bug: daprd embeds this as an object, Python's parser hit RecursionError -> 500
    # -> ~10 redeliveries before the dead-letter topic. Now DROP at once.
    ("nested-5000-levels", lambda m: payload(m)[:-2] + b',"x":' + deep(5000).encode() + b"}}",
     "application/json", "too_deep"),
    # Past Go's nesting limit daprd forwards the body as a JSON string: refused on size first.
    ("nested-100000-levels",
     lambda m: payload(m)[:-2] + b',"x":' + deep(100_000).encode() + b"}}", "application/json",
     "too_large"),
]


async def publish_raw(topo: Topology, body: bytes, content_type: str) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.post(
            f"http://127.0.0.1:{topo.apps['producer'].http_port}/v1.0/publish/pubsub/task-updates",
            content=body,
            headers={"dapr-api-token": topo.api_token, "Content-Type": content_type},
        )
    assert r.status_code == 204, r.text


def gateway_log(topo: Topology) -> str:
    return "".join(
        a.app.log_path.read_text(errors="replace")
        for name, a in topo.apps.items()
        if name.startswith("gateway-") and a.app is not None
    )


async def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


@pytest.mark.parametrize(("body", "content_type", "reason"), [t[1:] for t in TOPIC],
                         ids=[t[0] for t in TOPIC])
async def test_bad_topic_message_is_dead_lettered_once_and_blocks_nothing(
    topo: Topology, body: Callable[[str], bytes], content_type: str, reason: str
) -> None:
    u = uid("dlq")
    c = await open_ok(topo, "gw-a", u)
    marker = f"marker-{uuid.uuid4().hex}"
    line = f"dropping task-updates message to dead-letter: reason={reason} "
    errors = '"POST /internal/dapr/task-updates HTTP/1.1" 500'
    drops0, errors0 = gateway_log(topo).count(line), gateway_log(topo).count(errors)

    await publish_raw(topo, body(marker), content_type)
    await publish(topo, event("task_created", 42, audience=[u]))
    # The valid event right behind it is delivered, with the user's first seq.
    (ev,) = await c.events(1, timeout=15)
    assert (ev["seq"], ev["data"]["id"]) == (1, 42)

    def dead_lettered() -> int:
        out = redis_cli(topo, "XREVRANGE", "task-updates-deadletter", "+", "-", "COUNT", "200")
        return sum(1 for entry in out.splitlines() if marker in entry)

    # Promptly on the dead-letter topic (a retried message would get there only after the
    # resiliency policy's ~10 attempts), with the reason in the gateway log...
    await poll(lambda: dead_lettered() == 1, 10, "message on task-updates-deadletter")
    await poll(lambda: gateway_log(topo).count(line) == drops0 + 1, 10, f"logged {reason}")
    # ... exactly once: no 500 (which Dapr retries), no second DROP.
    await publish(topo, event("task_created", 43, audience=[u]))
    (ev2,) = await c.events(1, timeout=15)
    assert ev2["seq"] == 2
    log = gateway_log(topo)
    assert log.count(line) == drops0 + 1
    assert log.count(errors) == errors0
    assert dead_lettered() == 1
    await c.close()


# -- leftovers ------------------------------------------------------------------------------------
async def test_slow_but_complete_handshake_is_accepted(topo: Topology) -> None:
    """Control for the head deadline: a client that takes a while but finishes within it is
    upgraded normally."""
    u = uid("slowok")
    r, w = await asyncio.open_connection("127.0.0.1", gw_port(topo, "gw-b"))
    key = base64.b64encode(uuid.uuid4().bytes).decode()
    lines = [b"GET /ws HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"Upgrade: websocket\r\n",
             b"Connection: Upgrade\r\n", f"Sec-WebSocket-Key: {key}\r\n".encode(),
             b"Sec-WebSocket-Version: 13\r\n", f"Authorization: Bearer {token(u)}\r\n".encode(),
             b"\r\n"]
    for line in lines:
        w.write(line)
        await asyncio.sleep(HEADER_TIMEOUT / 3 / len(lines))
    async with asyncio.timeout(10):
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        first = await r.readexactly(2)  # unmasked server text frame: 0x81, length
        assert first[0] == 0x81
        size = first[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await r.readexactly(2), "big")
        welcome = await r.readexactly(size)
    w.close()
    assert json.loads(welcome)["type"] == "welcome"


async def test_no_bearer_token_reaches_the_gateway_logs(topo: Topology) -> None:
    """Query-string tokens (EventSource can't send headers) are redacted from access logs."""
    u = uid("logs")
    tok = token(u)
    c, answer = await connect(topo, "gw-a", None, query=f"token={tok}")
    assert c is not None, answer
    await c.close()
    s = await Sse.open(topo, "gw-b", "ignored", query=f"token={tok}",
                       headers={"Authorization": ""})
    assert s.resp.status_code == 200
    await s.close()
    await poll(lambda: gateway_log(topo).count("token=[redacted]") >= 2, 10, "access log lines")
    log = gateway_log(topo)
    assert tok not in log
    assert "token=eyJ" not in log
