"""Sessions host: the FastAPI app that hosts the UserSession and ReplicaRegistry actor types."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from dapr.actor.runtime.config import ActorRuntimeConfig
from dapr.actor.runtime.runtime import ActorRuntime
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI, Request, Response

from actors import memory_generation, metrics
from actors.fast_dispatch import ActorFastPath
from actors.registry_actor import ReplicaRegistry
from actors.serializers import BytesPassthroughSerializer
from actors.session_actor import UserSession
from actors.state_client import STATE
from actors.wire import pack
from vocab import logsetup
from vocab.dapr_trust import DaprTokenMiddleware
from vocab.scrape import MetricsEndpoint

logsetup.configure("sessions")  # TASKSYNC_LOG_FORMAT, LOG_LEVEL, TASKSYNC_REPLICA_ID

ActorRuntime.set_actor_config(
    ActorRuntimeConfig(
        actor_idle_timeout=timedelta(minutes=15),
        actor_scan_interval=timedelta(seconds=30),
        # Short: a rebalance stalls actor calls for this long (calls here take milliseconds).
        drain_ongoing_call_timeout=timedelta(seconds=3),
        drain_rebalanced_actors=True,
    )
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    for actor in (UserSession, ReplicaRegistry):
        # State goes through actors/state_client.py, not the SDK's state manager.
        await actor_ext.register_actor(actor, message_serializer=BytesPassthroughSerializer())
    yield
    await STATE.close()


api = FastAPI(title="tasksync sessions host", lifespan=lifespan)


@api.middleware("http")
async def new_daprd_makes_memory_stale(request: Request, call_next: Any) -> Any:
    # A (re)started daprd asks for /dapr/config before it hosts actors here: what this process
    # still holds in memory may have been changed on the other replica meanwhile.
    if request.url.path == "/dapr/config":
        memory_generation.new_daprd()
    return await call_next(request)

actor_ext = DaprActor(api)
# What uvicorn serves. Every route is a Dapr callback: only daprd (holding APP_API_TOKEN) may call
# them. Actor method calls, the hot path, skip FastAPI's routing (actors/fast_dispatch.py).
# Outermost, GET /metrics: the app token, or TASKSYNC_METRICS_TOKEN as a bearer (vocab/scrape.py).
app = MetricsEndpoint(
    DaprTokenMiddleware(
        ActorFastPath(api), protected_prefixes=("/",), open_paths=("/healthz", "/readyz")
    ),
    render=metrics.render,
)


@api.get("/readyz")
async def readyz() -> Response:
    """Ready = an actor call through our daprd succeeds (placement has disseminated)."""
    port = os.environ.get("DAPR_HTTP_PORT", "3500")
    token = os.environ.get("DAPR_API_TOKEN")
    headers = {"dapr-api-token": token} if token else {}
    try:
        async with httpx.AsyncClient(timeout=3.0) as client:
            resp = await client.put(
                f"http://127.0.0.1:{port}/v1.0/actors/ReplicaRegistry/default/method/snapshot",
                content=pack({}),
                headers=headers,
            )
        ok = resp.status_code == 200
    except httpx.HTTPError:
        ok = False
    return Response(status_code=200 if ok else 503)
