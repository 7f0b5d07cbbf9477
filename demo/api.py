"""Demo task API: keeps tasks in memory and publishes every change to `task-updates` through its
own daprd. It stands in for the todo application; the sync service never reads this store."""

import os
import time
import uuid
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, Field

from demo import metrics
from gateway.auth import AuthConfig, AuthError, verify
from gateway.tracing import new_traceparent
from vocab.scrape import MetricsEndpoint


class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    shared_with: list[str] = Field(default_factory=list, max_length=20)


class TaskPatch(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    completed: bool | None = None


def create_app() -> FastAPI:
    app = FastAPI(title="tasksync demo task API")
    # The demo page is served by the gateways (other ports): allow loopback origins only.
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=r"http://(127\.0\.0\.1|localhost):\d+",
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(MetricsEndpoint, render=metrics.render)
    tasks: dict[int, dict[str, Any]] = {}
    next_id = [1]
    auth = AuthConfig.from_env()
    dapr = f"http://127.0.0.1:{os.environ.get('DAPR_HTTP_PORT', '3500')}"
    token = os.environ.get("DAPR_API_TOKEN")
    client = httpx.AsyncClient(
        base_url=dapr, timeout=5.0, headers={"dapr-api-token": token} if token else {}
    )

    def user_of(request: Request) -> str:
        header = request.headers.get("authorization", "")
        try:
            return verify(auth, header[7:] if header.lower().startswith("bearer ") else "").user
        except AuthError as e:
            raise HTTPException(401, e.message) from e

    async def publish(kind: str, task: dict[str, Any]) -> None:
        # Top-level `version` (docs/protocol.md, Producers): the actor records each task's events
        # in this order although the pub/sub reorders them. Also kept in `data` for clients.
        body = {"event_id": uuid.uuid4().hex, "type": kind, "data": task, "ts": time.time(),
                "version": task["version"]}
        t0 = time.perf_counter()
        try:
            # Each change starts a sampled W3C trace: daprd's parent-based sampler traces it
            # through the gateway and the actor call to the socket (docs/operations.md, Tracing).
            resp = await client.post("/v1.0/publish/pubsub/task-updates", json=body,
                                     headers={"traceparent": new_traceparent()})
        except httpx.HTTPError:
            metrics.PUBLISHES.labels(kind, "error").inc()
            raise
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - t0)
        ok = resp.status_code in (200, 204)
        metrics.PUBLISHES.labels(kind, "ok" if ok else "error").inc()
        if not ok:
            raise HTTPException(502, f"publish failed: {resp.status_code} {resp.text[:200]}")

    def visible(task: dict[str, Any], user: str) -> bool:
        return task["owner_id"] == user or user in task["shared_with"]

    def get(task_id: int, user: str) -> dict[str, Any]:
        task = tasks.get(task_id)
        if task is None or not visible(task, user):
            raise HTTPException(404, "no such task")
        return task

    @app.get("/readyz")
    async def readyz() -> Response:
        r = await client.get("/v1.0/healthz")
        return Response(status_code=200 if r.status_code == 204 else 503)

    @app.get("/tasks")
    async def list_tasks(request: Request) -> list[dict[str, Any]]:
        user = user_of(request)
        return [t for t in tasks.values() if visible(t, user)]

    @app.post("/tasks", status_code=201)
    async def create(body: TaskIn, request: Request) -> dict[str, Any]:
        user = user_of(request)
        task: dict[str, Any] = {
            "id": next_id[0],
            "title": body.title,
            "description": body.description,
            "completed": False,
            "owner_id": user,
            "shared_with": body.shared_with,
            # Bumped on every change: after a crash the pub/sub may redeliver an older change
            # late (processingTimeout), and clients must not let it overwrite a newer one.
            "version": 1,
        }
        next_id[0] += 1
        tasks[task["id"]] = task
        await publish("task_created", task)
        return task

    @app.patch("/tasks/{task_id}")
    async def update(task_id: int, body: TaskPatch, request: Request) -> dict[str, Any]:
        task = get(task_id, user_of(request))
        changes = body.model_dump(exclude_none=True)
        task.update(changes)
        task["version"] += 1
        kind = "task_completed" if changes.get("completed") is True else "task_updated"
        await publish(kind, task)
        return task

    @app.delete("/tasks/{task_id}", status_code=204)
    async def delete(task_id: int, request: Request) -> Response:
        task = get(task_id, user_of(request))
        del tasks[task_id]
        await publish(
            "task_deleted",
            {
                "id": task_id,
                "owner_id": task["owner_id"],
                "shared_with": task["shared_with"],
                "version": task["version"] + 1,
            },
        )
        return Response(status_code=204)

    return app
