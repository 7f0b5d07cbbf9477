"""The gateway FastAPI app: public transports plus Dapr callback routes behind the token check."""

import asyncio
import json
import logging
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
from gateway.topic_ingest import TOPIC_PATH, TopicIngest
from gateway.topic_schema import TopicLimits
from gateway.transport_sse import sse_endpoint, sse_post
from gateway.transport_ws import websocket_endpoint
from vocab import logsetup
from vocab.asgi_io import PostRoutes
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
    async def forward(raw: bytes) -> tuple[int, bytes]:
        """A batch another replica forwards (token-checked like every /internal/ route)."""
        try:
            batch = ForwardBatch.from_wire(unpack(raw))
        except (ValueError, TypeError) as e:
            log.warning("refusing malformed forward batch: %r", e)
            return 400, json.dumps({"error": "bad_batch", "message": str(e)[:200]}).encode()
        ctx.fanout.receive_forward(batch)
        metrics.FORWARDS_IN.inc(len(batch.items))
        return 200, b""

    # The two routes that run per event skip FastAPI's routing (vocab/asgi_io.py); added first,
    # so the token check below runs before them.
    app.add_middleware(PostRoutes, routes={
        TOPIC_PATH: TopicIngest(ctx.fanout, TopicLimits()).http, FORWARD_PATH: forward})
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


def configure_logging(settings: Settings) -> None:
    logsetup.configure("gateway", settings.log_level, settings.log_format, settings.replica_id)
