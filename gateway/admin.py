"""Operator API on every gateway replica, under /admin/, with its own token.

- `TASKSYNC_ADMIN_TOKEN` unset: every /admin/ route answers 403 "admin API disabled". Set, the
  caller presents `Authorization: Bearer <token>` (constant-time compare), else 401.
- Any replica answers for the whole system: it asks the others (their URLs come from the replica
  registry, like forwards) with the same token, on their `/admin/local/...` routes, and the
  user's `UserSession` actor (`inspect`) for the session itself.
- Never a payload: the session view keeps positions, cursors, counts and the ids/versions of
  held events, and drops their data (`session_view`).

Routes: GET /admin/replicas, GET /admin/users/{user}/connections, GET /admin/users/{user}/session,
POST /admin/users/{user}/disconnect {"code": 4011 | "server_shutdown", "conn": optional id},
POST /admin/replicas/{replica}/drain; and the per-replica /admin/local/{status, connections,
disconnect, drain} they fan out to. The CLI is gateway/admin_cli.py (`tasksync-admin`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Mapping
from typing import NotRequired, TypedDict
from urllib.parse import quote

import aiohttp
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request

from gateway import protocol
from gateway.actor_client import ActorUnavailable
from gateway.context import Context
from vocab.closecodes import BY_NAME, CLOSE_CODES, CloseCode
from vocab.ids import USER_ID_RE
from vocab.json_types import JsonObject, WireMap

log = logging.getLogger("gateway.admin")
PEER_TIMEOUT_S = 10.0  # a drain waits up to 5 s for its connections


def close_code(value: object) -> CloseCode:
    """A code from the catalogue (vocab/closecodes.py), by number or by name."""
    code = None
    if isinstance(value, int) and not isinstance(value, bool):
        code = CLOSE_CODES.get(value)
    elif isinstance(value, str):
        code = BY_NAME.get(value) or (CLOSE_CODES.get(int(value)) if value.isdigit() else None)
    if code is None:
        raise HTTPException(400, f"code must be one of {sorted(CLOSE_CODES)} or their names")
    return code


class OrderView(TypedDict):
    stale: object
    tasks_tracked: int
    held_events: list[list[object]]  # [event id, task id, type, version, first seen]


class SessionView(TypedDict):
    """GET /admin/users/{user}/session. The actor's values are shown as stored (an operator
    looks at a possibly corrupt session too), so they stay ``object``: nothing reads inside."""

    user: str
    epoch: object
    head: object
    tail: object
    retained: int
    oldest_ts: object
    newest_ts: object
    retention: JsonObject
    devices: object
    filters: object
    connections: object
    connections_per_replica: dict[str, int]
    dedup_ids: int
    order: OrderView
    positions: NotRequired[JsonObject]  # replica -> its connections of the user
    as_of: NotRequired[float]


class ReplicaStatus(TypedDict):
    replica: str
    url: str
    draining: bool
    connections: int
    by_transport: dict[str, int]
    users: int
    events: int
    actor_calls: int
    forwards: int
    bugs: int
    live_replicas: list[str]


class DrainAnswer(TypedDict):
    replica: str
    closed: int
    draining: bool


def _obj(v: object) -> WireMap:
    """Lenient read of the inspect answer: anything but an object reads as empty."""
    return v if isinstance(v, Mapping) else {}


def _rows(v: object) -> list[object]:
    return list(v) if isinstance(v, list | tuple) else []


def session_view(user: str, answer: WireMap) -> SessionView:
    """The actor's inspect answer without payloads: the meta's own fields, summarized."""
    meta = _obj(answer.get("meta"))
    order = _obj(meta.get("order"))
    stamps = _rows(meta.get("stamps"))
    limits = _obj(answer.get("limits"))
    conns = _obj(meta.get("conns"))
    per_replica: dict[str, int] = {}
    for lease in conns.values():
        replica = _obj(lease).get("replica", "?")
        key = replica if isinstance(replica, str) else "?"
        per_replica[key] = per_replica.get(key, 0) + 1
    return {
        "user": user, "epoch": meta.get("epoch"), "head": meta.get("head"),
        "tail": meta.get("tail"), "retained": len(stamps),
        "oldest_ts": stamps[0] if stamps else None, "newest_ts": stamps[-1] if stamps else None,
        "retention": {k: limits[k] for k in ("max_events", "max_age_s") if k in limits},
        "devices": meta.get("devices") or {}, "filters": meta.get("filters") or {},
        "connections": conns, "connections_per_replica": per_replica,
        "dedup_ids": len(_rows(meta.get("seen"))),
        "order": {
            "stale": order.get("stale", 0), "tasks_tracked": len(_rows(order.get("tasks"))),
            # [event id, task id, type, version, first seen]: the event body is dropped.
            "held_events": [_rows(row)[:5] for row in _rows(order.get("held_events"))],
        },
    }


def install(app: FastAPI, ctx: Context) -> None:
    token = ctx.settings.admin_token

    def guard(request: Request) -> None:
        if not token:
            raise HTTPException(403, "admin API disabled (TASKSYNC_ADMIN_TOKEN unset)")
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), given.encode()):
            raise HTTPException(401, "admin token required", {"WWW-Authenticate": "Bearer"})

    r = APIRouter(prefix="/admin", dependencies=[Depends(guard)])
    hub = ctx.hub

    def local_status() -> ReplicaStatus:
        by_transport: dict[str, int] = {}
        for c in hub.conns.values():
            by_transport[c.transport] = by_transport.get(c.transport, 0) + 1
        f = ctx.fanout
        return {"replica": ctx.settings.replica_id, "url": ctx.settings.advertise_url,
                "draining": hub.draining, "connections": len(hub.conns),
                "by_transport": by_transport, "users": len(hub.by_user),
                "events": f.events, "actor_calls": f.actor_calls, "forwards": f.forwards,
                "bugs": f.bugs, "live_replicas": sorted(hub.members.peer_urls)}

    def local_connections(user: str | None) -> list[JsonObject]:
        ids = hub.by_user.get(user, set()) if user else set(hub.conns)
        return [hub.conns[i].describe() for i in sorted(ids) if i in hub.conns]

    def local_disconnect(user: str, conn: str | None, code: CloseCode) -> list[str]:
        closed = []
        for cid in sorted(hub.by_user.get(user, set())):
            c = hub.conns.get(cid)
            if c is not None and (conn is None or cid == conn) and not c.closed.is_set():
                c.fail(code)
                closed.append(cid)
        if closed:
            log.warning("admin closed %d connection(s) with %d %s", len(closed), code.code,
                        code.name, extra={"user": user})
        return closed

    async def local_drain() -> DrainAnswer:
        n = len(hub.conns)
        log.warning("admin drain: closing %d connection(s) with 4011", n)
        await hub.drain(protocol.SERVER_SHUTDOWN)
        ctx.fanout.close()
        return {"replica": ctx.settings.replica_id, "closed": n, "draining": True}

    async def everywhere(method: str, path: str, local: object,
                         body: JsonObject | None = None) -> JsonObject:
        """This replica's answer plus every live peer's, by replica id (errors included)."""
        out: JsonObject = {ctx.settings.replica_id: local}
        try:
            urls = (await ctx.sessions.registry_snapshot()).urls
        except ActorUnavailable as e:
            out["_registry"] = {"error": str(e)[:200]}
            return out
        peers = {r: u for r, u in urls.items() if r != ctx.settings.replica_id}
        async with _peer_session(token) as http:
            answers = await asyncio.gather(*(
                _peer(http, method, url.rstrip("/") + path, body) for url in peers.values()))
        out.update(zip(peers, answers, strict=True))
        return out

    # response_model=None: the answers are built here and typed; FastAPI only encodes them.
    @r.get("/local/status", response_model=None)
    async def status() -> ReplicaStatus:
        return local_status()

    @r.get("/local/connections", response_model=None)
    async def connections(user: str | None = None) -> list[JsonObject]:
        return local_connections(_user(user) if user else None)

    @r.post("/local/disconnect", response_model=None)
    async def disconnect_here(request: Request) -> dict[str, list[str]]:
        body = await _json(request)
        return {"closed": local_disconnect(_user(body.get("user")), _conn(body.get("conn")),
                                           close_code(body.get("code")))}

    @r.post("/local/drain", response_model=None)
    async def drain_here() -> DrainAnswer:
        return await local_drain()

    @r.get("/replicas", response_model=None)
    async def replicas() -> JsonObject:
        return await everywhere("GET", "/admin/local/status", local_status())

    @r.get("/users/{user}/connections", response_model=None)
    async def user_connections(user: str) -> JsonObject:
        _user(user)
        per = await everywhere("GET", f"/admin/local/connections?user={quote(user, safe='')}",
                               local_connections(user))
        return {"user": user, "replicas": per}

    @r.get("/users/{user}/session", response_model=None)
    async def session(user: str) -> SessionView:
        _user(user)
        try:
            answer = await ctx.dapr.call("UserSession", user, "inspect", {})
        except ActorUnavailable as e:
            raise HTTPException(503, f"session actor unavailable: {e}") from e
        view = session_view(user, answer)
        per = await everywhere("GET", f"/admin/local/connections?user={quote(user, safe='')}",
                               local_connections(user))
        # Positions as each replica's connection sees them (cursor, queued and held frames).
        view["positions"] = per
        view["as_of"] = time.time()
        return view

    @r.post("/users/{user}/disconnect", response_model=None)
    async def disconnect(user: str, request: Request) -> JsonObject:
        body = await _json(request)
        code, conn = close_code(body.get("code")), _conn(body.get("conn"))
        req: JsonObject = {"user": _user(user), "conn": conn, "code": code.code}
        per = await everywhere("POST", "/admin/local/disconnect",
                               {"closed": local_disconnect(user, conn, code)}, req)
        return {"user": user, "code": code.code, "name": code.name, "replicas": per}

    @r.post("/replicas/{replica}/drain", response_model=None)
    async def drain(replica: str) -> DrainAnswer | JsonObject:
        if replica == ctx.settings.replica_id:
            return await local_drain()
        try:
            urls = (await ctx.sessions.registry_snapshot()).urls
        except ActorUnavailable as e:
            raise HTTPException(503, f"registry unavailable: {e}") from e
        if replica not in urls:
            raise HTTPException(404, f"no live replica {replica!r} in the registry")
        async with _peer_session(token) as http:
            answer = await _peer(http, "POST", urls[replica].rstrip("/") + "/admin/local/drain")
        return dict(answer) if isinstance(answer, dict) else {"answer": answer}

    app.include_router(r)


def _user(user: object) -> str:
    if not isinstance(user, str) or USER_ID_RE.fullmatch(user) is None:
        raise HTTPException(400, "bad user id")
    return user


def _conn(conn: object) -> str | None:
    if conn is None:
        return None
    if not isinstance(conn, str) or not 1 <= len(conn) <= 128:
        raise HTTPException(400, "bad connection id")
    return conn


async def _json(request: Request) -> JsonObject:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise HTTPException(400, "body must be a JSON object")
    return body


def _peer_session(token: str | None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"authorization": f"Bearer {token}"},
                                 timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S))


async def _peer(http: aiohttp.ClientSession, method: str, url: str,
                body: JsonObject | None = None) -> object:
    """A peer's JSON answer (not trusted: the callers pass it through), or the error."""
    try:
        async with http.request(method, url, json=body) as resp:
            if resp.status != 200:
                return {"error": f"HTTP {resp.status}", "detail": (await resp.text())[:200]}
            return await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return {"error": repr(e)[:200]}
