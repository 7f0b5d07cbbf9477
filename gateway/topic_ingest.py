"""`POST /internal/dapr/task-updates`: daprd's deliveries of the topic.

daprd posts one message per request (components/subscription.yaml says why not bulk), so this
route runs once per event; it is served past FastAPI's routing (vocab/asgi_io.PostRoutes,
inside the token check: only daprd reaches it).

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

log = logging.getLogger("gateway")

TOPIC_PATH = "/internal/dapr/task-updates"

# daprd's JSON decoder accepts nesting up to 10,000 levels, so a bulk envelope may carry an event
# that deep; Python's default limit of 1,000 would fail the whole batch. Re-parse such a body with
# a limit above daprd's (the C stack easily holds it) so the deep entry alone is refused.
_DEEP_LIMIT = 12_000


class TopicIngest:
    """Validation and status per message; the fan-out batches what arrives together."""

    def __init__(self, fanout: Fanout, limits: TopicLimits) -> None:
        self.fanout = fanout
        self.limits = limits

    async def http(self, raw: bytes) -> tuple[int, bytes]:
        """The route: a bug raises (PostRoutes answers 500, daprd retries)."""
        return 200, json.dumps(await self.answer(raw), separators=(",", ":")).encode()

    async def answer(self, raw: bytes) -> dict[str, Any]:
        body, plain = _parse_envelope(raw)
        # daprd's bulk envelope has `entries` and is no CloudEvent; a CloudEvent that carries an
        # `entries` extension is one message (validated, and DROPped if it is not a task event).
        if (isinstance(body, dict) and isinstance(body.get("entries"), list)
                and "specversion" not in body):
            return {"statuses": await self._bulk(body["entries"])}
        try:
            # Parsed once: the envelope above is validated as it is. A body that did not parse
            # plainly goes to parse_topic_body only to learn why (size, depth or JSON).
            ev = (parse_topic_message(body, len(raw), self.limits) if plain
                  else parse_topic_body(raw, self.limits))
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


def _dropped(e: InvalidEvent) -> None:
    log.warning("dropping task-updates message to dead-letter: reason=%s %s", e.reason, e)
    metrics.DROPPED.labels(e.reason).inc()


def _parse_envelope(raw: bytes) -> tuple[Any, bool]:
    """The parsed body (None if it is not JSON) and whether Python's default depth sufficed;
    only a bulk envelope is worth the deep re-parse (single messages that deep are refused)."""
    if not raw:
        return None, False
    try:
        return json.loads(raw), True
    except RecursionError:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, _DEEP_LIMIT))
        try:
            return json.loads(raw), False
        except (ValueError, RecursionError):
            return None, False
        finally:
            sys.setrecursionlimit(old)
    except ValueError:
        return None, False


def _json_size(value: Any) -> int:
    """Serialized size of an already parsed entry; too deep to serialize = too deep to accept."""
    try:
        return len(json.dumps(value, separators=(",", ":")))
    except RecursionError:
        raise InvalidEvent("too_deep", "event nests too deep") from None
