"""Actor state through daprd's HTTP API, on one pooled keep-alive connection set.

The SDK's state path opens a new TCP connection per call and reads before every write of a new
key (see docs/architecture.md). Measured on this machine (aiohttp vs httpx, loopback, pooled):
aiohttp costs ~0.17 ms of CPU per request, httpx ~1.0 ms, so every app->daprd hop uses aiohttp.
Actors still run under the SDK's DaprActor hosting (turn-based concurrency, activation); only the
state calls bypass its state manager.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from urllib.parse import quote

import aiohttp

from actors import metrics
from actors.session_storage import Operation


class StateUnavailable(Exception):
    """daprd or the state store did not answer as expected: the turn fails, nothing is kept."""


class ActorStateClient:
    def __init__(self, base_url: str, api_token: str | None, concurrency: int = 16) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"dapr-api-token": api_token} if api_token else {}
        self._session: aiohttp.ClientSession | None = None
        self._concurrency = concurrency

    @classmethod
    def from_env(cls) -> ActorStateClient:
        port = os.environ.get("DAPR_HTTP_PORT", "3500")
        return cls(f"http://127.0.0.1:{port}", os.environ.get("DAPR_API_TOKEN"))

    def _http(self) -> aiohttp.ClientSession:
        # Created lazily inside the running loop (aiohttp binds a session to its loop).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=10.0),
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=60.0),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _url(self, actor_type: str, actor_id: str) -> str:
        return f"{self._base}/v1.0/actors/{actor_type}/{quote(actor_id, safe='')}/state"

    async def get(self, actor_type: str, actor_id: str, key: str) -> object:
        """The stored JSON value (untrusted: narrow it), or None when the key does not exist."""
        url = f"{self._url(actor_type, actor_id)}/{quote(key, safe='')}"
        t0, outcome = time.perf_counter(), "error"
        try:
            async with self._http().get(url) as resp:
                body = await resp.read()
                if resp.status == 204 or (resp.status == 200 and not body):
                    outcome = "ok"
                    return None
                if resp.status != 200:
                    raise StateUnavailable(f"GET {key}: HTTP {resp.status} {body[:200]!r}")
                outcome = "ok"
        except (aiohttp.ClientError, TimeoutError) as e:
            raise StateUnavailable(f"GET {key}: {e!r}") from e
        finally:
            metrics.STATE_READ.labels(outcome).observe(time.perf_counter() - t0)
        return json.loads(body)

    async def get_many(self, actor_type: str, actor_id: str, keys: Sequence[str]) -> list[object]:
        """All keys in one concurrent round (bounded), in order; None for missing keys."""
        sem = asyncio.Semaphore(self._concurrency)

        async def one(key: str) -> object:
            async with sem:
                return await self.get(actor_type, actor_id, key)

        return list(await asyncio.gather(*(one(k) for k in keys)))

    async def transact(self, actor_type: str, actor_id: str, ops: Sequence[Operation]) -> None:
        """Every operation in ONE state-store transaction (meta and events always agree)."""
        body = [
            {"operation": op, "request": {"key": key}}
            if op == "delete"
            else {"operation": op, "request": {"key": key, "value": value}}
            for op, key, value in ops
        ]
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        t0, outcome = time.perf_counter(), "error"
        try:
            async with self._http().post(
                self._url(actor_type, actor_id),
                data=data,
                headers={"content-type": "application/json"},
            ) as resp:
                if resp.status not in (200, 201, 204):
                    text = await resp.read()
                    raise StateUnavailable(f"transaction: HTTP {resp.status} {text[:200]!r}")
                outcome = "ok"
        except (aiohttp.ClientError, TimeoutError) as e:
            raise StateUnavailable(f"transaction: {e!r}") from e
        finally:
            metrics.STATE_WRITE.labels(outcome).observe(time.perf_counter() - t0)


# One pooled client per process, shared by every actor type.
STATE = ActorStateClient.from_env()
