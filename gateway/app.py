"""The gateway FastAPI app: public transports plus Dapr callback routes behind the token check."""

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse

from actors.wire import unpack
from gateway import admin, metrics, protocol, stream_trim, tracing
from gateway.actor_client import ActorUnavailable
from gateway.auth import AuthConfig
from gateway.config import Settings
from gateway.context import Context
from gateway.forwards import ForwardBatch
from gateway.peers import FORWARD_PATH
from gateway.sessions import SessionsPort
from gateway.topic_schema import (
    InvalidEvent,
    TaskEvent,
    TopicLimits,
    parse_topic_body,
    parse_topic_message,
)
from gateway.transport_sse import sse_endpoint, sse_post
from gateway.transport_ws import websocket_endpoint
from vocab import logsetup
from vocab.dapr_trust import DaprTokenMiddleware
from vocab.scrape import MetricsEndpoint

log = logging.getLogger("gateway")
STATIC = Path(__file__).resolve().parent / "static"


def create_app(
    settings: Settings | None = None,
    auth: AuthConfig | None = None,
    sessions: SessionsPort | None = None,
) -> FastAPI:
    settings = settings or Settings()
    ctx = Context.build(settings, auth or AuthConfig.from_env(), sessions)
    topic_limits = TopicLimits()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracing.configure(settings.tracing_endpoint, "tasksync-gateway", settings.replica_id)
        ctx.hub.start()
        trimmer = None
        if settings.stream_redis_url:
            trimmer = asyncio.create_task(stream_trim.run(
                settings.stream_redis_url, ["task-updates"], "task-updates-deadletter",
                settings.stream_trim_s))
        yield
        if trimmer is not None:
            trimmer.cancel()
        await ctx.hub.drain(protocol.SERVER_SHUTDOWN)
        await ctx.hub.stop()
        ctx.fanout.close()  # pending release timers (held events stay in the actors' state)
        await ctx.dapr.close()
        await ctx.fanout.peers.close()
        await asyncio.to_thread(tracing.shutdown)  # flushes the last spans

    app = FastAPI(title="tasksync gateway", lifespan=lifespan)
    app.state.ctx = ctx
    metrics.bind(ctx)
    # Dapr callback routes: only daprd holds APP_API_TOKEN. Browsers can't inject events.
    app.add_middleware(DaprTokenMiddleware, protected_prefixes=("/dapr/", "/internal/"))
    if settings.allowed_origins:
        # A page served by one replica may fail over to another: the SSE stream and its POSTs
        # are then cross-origin. Only allowlisted origins get CORS headers (and preflights).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "last-event-id"],
        )
    # Outermost: GET /metrics with the app token (or TASKSYNC_METRICS_TOKEN), vocab/scrape.py.
    app.add_middleware(MetricsEndpoint, render=metrics.render)

    admin.install(app, ctx)  # /admin/: its own token (TASKSYNC_ADMIN_TOKEN), refused when unset

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "replica": settings.replica_id}

    @app.get("/readyz")
    async def readyz() -> Response:
        if ctx.hub.draining:
            return JSONResponse({"ready": False, "why": "draining"}, status_code=503)
        try:
            # A real actor call through daprd and placement (the registry's one actor), and this
            # replica already registered there: until then peers can't forward to it.
            view = await ctx.sessions.registry_snapshot()
        except ActorUnavailable as e:
            return JSONResponse({"ready": False, "why": str(e)[:200]}, status_code=503)
        if settings.replica_id not in view.urls:
            await ctx.hub.heartbeat()  # register now rather than at the next lease renewal
            return JSONResponse({"ready": False, "why": "not registered yet"}, status_code=503)
        return JSONResponse({"ready": True, "replica": settings.replica_id})

    @app.get("/dapr/subscribe")
    async def subscribe() -> list[dict[str, Any]]:
        # task-updates is declared in components/subscription.yaml; forwards between replicas
        # go straight from app to app (gateway/peers.py), so nothing else is subscribed.
        return []

    @app.post("/internal/dapr/task-updates")
    async def task_updates(request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = _parse_envelope(raw)
        if isinstance(body, dict) and isinstance(body.get("entries"), list):
            return {"statuses": await _bulk(body["entries"])}
        try:
            ev = parse_topic_body(raw, topic_limits)
        except InvalidEvent as e:
            # DROP sends it to the dead-letter topic; never retried, never blocks the rest.
            log.warning("dropping task-updates message to dead-letter: reason=%s %s", e.reason, e)
            metrics.DROPPED.labels(e.reason).inc()
            return {"status": "DROP"}
        metrics.UNSTAMPED.inc(ev.published_at is None)
        try:
            await ctx.fanout.handle(ev)
        except ActorUnavailable as e:
            log.warning("event %s: transient failure, asking Dapr to retry: %s", ev.event.id, e,
                        extra={"event": ev.event.id})
            metrics.RETRIED.inc()
            return {"status": "RETRY"}
        return {"status": "SUCCESS"}

    async def _bulk(entries: list[Any]) -> list[dict[str, str]]:
        """Bulk subscribe: one status per entry. Invalid entries are DROPped alone; the valid
        ones go to the fan-out as one batch."""
        statuses: list[dict[str, str]] = []
        batch: list[tuple[str, TaskEvent]] = []
        for entry in entries:
            entry_id = entry.get("entryId") if isinstance(entry, dict) else None
            if not isinstance(entry_id, str):
                continue  # unanswerable; daprd retries entries it gets no status for
            try:
                event = entry.get("event")
                if isinstance(event, str | bytes):
                    ev = parse_topic_body(
                        event.encode() if isinstance(event, str) else event, topic_limits
                    )
                else:
                    ev = parse_topic_message(event, _json_size(event), topic_limits)
            except InvalidEvent as e:
                log.warning("dropping task-updates message to dead-letter: reason=%s %s",
                            e.reason, e)
                metrics.DROPPED.labels(e.reason).inc()
                statuses.append({"entryId": entry_id, "status": "DROP"})
                continue
            metrics.UNSTAMPED.inc(ev.published_at is None)
            batch.append((entry_id, ev))
        # A bug raises (counted and logged by the fan-out): the 500 makes daprd retry the batch.
        results = await ctx.fanout.ingest_batch([ev for _, ev in batch])
        for (entry_id, _), ok in zip(batch, results, strict=True):
            statuses.append({"entryId": entry_id, "status": "SUCCESS" if ok else "RETRY"})
        metrics.RETRIED.inc(results.count(False))
        return statuses

    @app.post(FORWARD_PATH)
    async def forward(request: Request) -> Response:
        """A batch another replica forwards (token-checked like every /internal/ route)."""
        try:
            batch = ForwardBatch.from_wire(unpack(await request.body()))
        except (ValueError, TypeError) as e:
            log.warning("refusing malformed forward batch: %r", e)
            return JSONResponse({"error": "bad_batch", "message": str(e)[:200]}, status_code=400)
        ctx.fanout.receive_forward(batch)
        metrics.FORWARDS_IN.inc(len(batch.items))
        return Response(status_code=200)

    @app.get("/internal/stats")
    async def stats() -> dict[str, Any]:
        f = ctx.fanout
        return {"replica": settings.replica_id, "events": f.events, "actor_calls": f.actor_calls,
                "forwards": f.forwards, "bugs": f.bugs, "connections": len(ctx.hub.conns)}

    @app.get("/internal/connections")
    async def connections() -> list[dict[str, Any]]:
        """Operator view of this replica's connections (behind the Dapr token like all of
        /internal/)."""
        return [c.describe() for c in ctx.hub.conns.values()]

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket_endpoint(websocket, ctx)

    @app.get("/sse")
    async def sse(request: Request) -> Response:
        return await sse_endpoint(request, ctx)

    @app.post("/sse/{conn_id}/{action}")
    async def sse_action(request: Request, conn_id: str, action: str) -> Response:
        if action not in ("ack", "subscribe", "unsubscribe", "ping"):
            return JSONResponse(
                {"type": "error", "code": "unknown_type", "message": "unknown action"},
                status_code=404,
            )
        return await sse_post(request, ctx, conn_id, action)

    if STATIC.is_dir():

        @app.get("/")
        async def index() -> FileResponse:
            return FileResponse(STATIC / "index.html")

        @app.get("/static/{name}")
        async def static(name: str) -> Response:
            path = (STATIC / name).resolve()
            if path.parent != STATIC or not path.is_file():
                return JSONResponse({"error": "not_found"}, status_code=404)
            return FileResponse(path)

    client_dir = STATIC.parent.parent / "clients" / "js" / "src"

    @app.get("/client/{name}")
    async def client_js(name: str) -> Response:
        # The browser client's ES modules, served as they are (the demo page imports index.js).
        # Only a name listed in that folder is served: no path from the request reaches the disk.
        files = {p.name: p for p in client_dir.glob("*.js")} if client_dir.is_dir() else {}
        path = files.get(name)
        if path is None or not path.is_file():
            return JSONResponse({"error": "not_found"}, status_code=404)
        return FileResponse(path, media_type="text/javascript")

    return app


# daprd's JSON decoder accepts nesting up to 10,000 levels, so a bulk envelope may carry an event
# that deep; Python's default limit of 1,000 would fail the whole batch. Re-parse such a body with
# a limit above daprd's (the C stack easily holds it) so the deep entry alone is refused.
_DEEP_LIMIT = 12_000


def _parse_envelope(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except RecursionError:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, _DEEP_LIMIT))
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            return None
        finally:
            sys.setrecursionlimit(old)
    except ValueError:
        return None


def _json_size(value: Any) -> int:
    """Serialized size of an already parsed entry; too deep to serialize = too deep to accept."""
    try:
        return len(json.dumps(value, separators=(",", ":")))
    except RecursionError:
        raise InvalidEvent("too_deep", "event nests too deep") from None


def configure_logging(settings: Settings) -> None:
    logsetup.configure("gateway", settings.log_level, settings.log_format, settings.replica_id)
