"""`POST /internal/dapr/task-updates`: daprd's deliveries of the topic, answered without FastAPI.

daprd posts one message per request (components/subscription.yaml says why not bulk), so this
route runs once per event. Through FastAPI it crossed the router, dependency solving and a
Response object: about 36% of the gateway app's CPU at 400 events/s (py-spy, docs/benchmarks.md,
step 3), against 9% for the handler itself. This thin ASGI layer serves just that route and
hands everything else to the app. It must sit inside DaprTokenMiddleware: only daprd reaches it.

Answers: one message -> {"status": SUCCESS | RETRY | DROP}; a bulk envelope (the chart can
still enable bulk subscribe, e.g. with Kafka) -> {"statuses": [{"entryId", "status"}...]}.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from gateway import metrics
from gateway.actor_client import ActorUnavailable
from gateway.fanout import Fanout
from gateway.topic_schema import (
    InvalidEvent,
    TaskEvent,
    TopicLimits,
    parse_topic_body,
    parse_topic_message,
)
from vocab.asgi_io import read_body, reply
from vocab.dapr_trust import ASGIApp, Receive, Scope, Send

log = logging.getLogger("gateway")

TOPIC_PATH = "/internal/dapr/task-updates"
_JSON = [(b"content-type", b"application/json")]

# daprd's JSON decoder accepts nesting up to 10,000 levels, so a bulk envelope may carry an event
# that deep; Python's default limit of 1,000 would fail the whole batch. Re-parse such a body with
# a limit above daprd's (the C stack easily holds it) so the deep entry alone is refused.
_DEEP_LIMIT = 12_000


class TopicIngest:
    """Validation and status per message; the fan-out batches what arrives together."""

    def __init__(self, fanout: Fanout, limits: TopicLimits) -> None:
        self.fanout = fanout
        self.limits = limits

    async def answer(self, raw: bytes) -> dict[str, Any]:
        body = _parse_envelope(raw)
        if isinstance(body, dict) and isinstance(body.get("entries"), list):
            return {"statuses": await self._bulk(body["entries"])}
        try:
            ev = parse_topic_body(raw, self.limits)
        except InvalidEvent as e:
            # DROP sends it to the dead-letter topic; never retried, never blocks the rest.
            _dropped(e)
            return {"status": "DROP"}
        metrics.UNSTAMPED.inc(ev.published_at is None)
        try:
            await self.fanout.handle(ev)
        except ActorUnavailable as e:
            log.warning("event %s: transient failure, asking Dapr to retry: %s", ev.event.id, e,
                        extra={"event": ev.event.id})
            metrics.RETRIED.inc()
            return {"status": "RETRY"}
        return {"status": "SUCCESS"}

    async def _bulk(self, entries: list[Any]) -> list[dict[str, str]]:
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
                        event.encode() if isinstance(event, str) else event, self.limits
                    )
                else:
                    ev = parse_topic_message(event, _json_size(event), self.limits)
            except InvalidEvent as e:
                _dropped(e)
                statuses.append({"entryId": entry_id, "status": "DROP"})
                continue
            metrics.UNSTAMPED.inc(ev.published_at is None)
            batch.append((entry_id, ev))
        # A bug raises (counted and logged by the fan-out): the 500 makes daprd retry the batch.
        results = await self.fanout.ingest_batch([ev for _, ev in batch])
        for (entry_id, _), ok in zip(batch, results, strict=True):
            statuses.append({"entryId": entry_id, "status": "SUCCESS" if ok else "RETRY"})
        metrics.RETRIED.inc(results.count(False))
        return statuses


class TopicFastPath:
    """ASGI: the topic route straight to TopicIngest; every other request to `app`."""

    def __init__(self, app: ASGIApp, ingest: TopicIngest) -> None:
        self.app = app
        self.ingest = ingest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != TOPIC_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            raw = await read_body(receive)
        except ConnectionError:
            return  # daprd went away; it redelivers what it did not get an answer for
        try:
            answer = await self.ingest.answer(raw)
        except Exception:  # a bug (already logged and counted): daprd retries on a 500
            await reply(send, 500, b'{"error":"internal"}', _JSON)
            return
        await reply(send, 200, json.dumps(answer, separators=(",", ":")).encode(), _JSON)


def _dropped(e: InvalidEvent) -> None:
    log.warning("dropping task-updates message to dead-letter: reason=%s %s", e.reason, e)
    metrics.DROPPED.labels(e.reason).inc()


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
