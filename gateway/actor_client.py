"""Calls to daprd's actor and publish APIs over one pooled HTTP client.

ActorProxy opens a new aiohttp session per call (~1.3 ms vs ~0.3 ms pooled on loopback), and httpx
costs ~1.0 ms of CPU per request against aiohttp's ~0.17 ms (measured here, pooled, loopback), so
the hot path talks to daprd directly with one pooled aiohttp session. Payloads are msgpack.
"""

import json
import time
from urllib.parse import quote

import aiohttp

from actors.wire import pack, unpack
from gateway import metrics, tracing
from vocab.json_types import WireMap

_MSGPACK = {"content-type": "application/msgpack"}
_JSON = {"content-type": "application/json"}


class ActorUnavailable(Exception):
    """Transient: the actor could not be reached or failed. Callers retry or answer RETRY."""


class DaprClient:
    def __init__(self, base_url: str, api_token: str | None, timeout_s: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"dapr-api-token": api_token} if api_token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created inside the running loop: an aiohttp session is bound to its loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=128, keepalive_timeout=60.0),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self, actor_type: str, actor_id: str, method: str, req: WireMap
    ) -> WireMap:
        url = f"{self._base}/v1.0/actors/{actor_type}/{quote(actor_id, safe='')}/method/{method}"
        what = f"{actor_type}/{actor_id}.{method}"
        t0 = time.perf_counter()
        try:
            # The active trace context (a traced delivery) rides along: daprd's spans join it.
            headers = tracing.with_header(_MSGPACK)
            async with self._http().put(url, data=pack(req), headers=headers) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            metrics.actor_call(actor_type, method, False, time.perf_counter() - t0)
            raise ActorUnavailable(f"{what}: {e!r}") from e
        metrics.actor_call(actor_type, method, resp.status == 200, time.perf_counter() - t0)
        if resp.status != 200:
            raise ActorUnavailable(f"{what}: HTTP {resp.status} {body[:300]!r}")
        try:
            return unpack(body)
        except ValueError as e:
            raise ActorUnavailable(f"{what}: undecodable answer: {e}") from e

    async def publish(self, pubsub: str, topic: str, data: WireMap) -> None:
        url = f"{self._base}/v1.0/publish/{pubsub}/{quote(topic, safe='')}"
        body = json.dumps(data, separators=(",", ":"))
        try:
            async with self._http().post(url, data=body, headers=_JSON) as resp:
                text = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ActorUnavailable(f"publish {topic}: {e!r}") from e
        if resp.status not in (200, 204):
            raise ActorUnavailable(f"publish {topic}: HTTP {resp.status} {text[:300]!r}")
