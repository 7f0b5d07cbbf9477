"""The replica-to-replica forward channel: one msgpack POST per destination replica per topic
batch, straight to the other replica's app over a pooled keep-alive connection.

Measured against the per-replica pub/sub topic it replaced (docs/architecture.md): the topic cost
a publish through daprd, a Redis stream entry, the other daprd's read, its HTTP call and ack; this
costs one HTTP request. Forwards are not durable, and need not be: the event is already in the
user's log, a failed forward makes the topic message RETRY (deliver is idempotent, connections
drop duplicate seqs), and a client whose replica died resumes from the log. The receiving route
accepts only callers holding the app token (like every Dapr callback route).
"""

from __future__ import annotations

import aiohttp

from actors.wire import pack
from gateway import metrics
from gateway.actor_client import ActorUnavailable
from gateway.forwards import ForwardBatch

FORWARD_PATH = "/internal/forward"


class PeerUnavailable(ActorUnavailable):
    """The destination replica did not take the batch: retry the messages behind it."""


class Peers:
    def __init__(self, app_token: str | None, timeout_s: float = 3.0) -> None:
        self._headers = {"content-type": "application/msgpack"}
        if app_token:
            self._headers["dapr-api-token"] = app_token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=60.0),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, base_url: str, batch: ForwardBatch) -> None:
        url = base_url.rstrip("/") + FORWARD_PATH
        try:
            async with self._http().post(url, data=pack(batch.to_wire())) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            metrics.FORWARD_FAILED.inc(len(batch.items))
            raise PeerUnavailable(f"forward to {base_url}: {e!r}") from e
        if resp.status != 200:
            metrics.FORWARD_FAILED.inc(len(batch.items))
            raise PeerUnavailable(f"forward to {base_url}: HTTP {resp.status} {body[:200]!r}")
        metrics.FORWARDED.inc(len(batch.items))
