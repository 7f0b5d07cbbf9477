"""Targeted fan-out of one topic message, and delivery of batches forwarded by other replicas.

For each recipient the actor records the event (dedup, filters, seq) and answers its routes. This
replica writes to its own connections and sends ONE forward per other replica that holds any of
the recipients' connections. Work is proportional to deliveries, not to the number of replicas.
"""

import asyncio
import logging
from typing import Any

from gateway.actor_client import ActorUnavailable, DaprClient
from gateway.config import Settings
from gateway.connection import EventItem
from gateway.hub import Hub
from gateway.sessions import Sessions
from gateway.topic_schema import TaskEvent

log = logging.getLogger("gateway.fanout")

DELIVER_CONCURRENCY = 32


def replica_topic(replica: str) -> str:
    return f"gateway-replica.{replica}"


class Fanout:
    def __init__(self, settings: Settings, sessions: Sessions, hub: Hub, dapr: DaprClient) -> None:
        self.settings = settings
        self.sessions = sessions
        self.hub = hub
        self.dapr = dapr
        # Counters for /internal/stats (benchmarks report actor calls per event from them).
        self.actor_calls = 0
        self.events = 0
        self.forwards = 0

    async def handle(self, ev: TaskEvent) -> int:
        """Raises ActorUnavailable on a transient failure: the caller answers RETRY, and the
        redelivery is safe because deliver is idempotent per event id and connections drop
        duplicate seqs. Returns the number of connection routes."""
        self.events += 1
        recipients = list(ev.audience) if ev.audience is not None else await self._everyone()
        event = {
            "id": ev.event_id,
            "type": ev.type,
            "data": ev.data,
            "task_id": ev.task_id,
            "list_id": ev.list_id,
        }
        sem = asyncio.Semaphore(DELIVER_CONCURRENCY)

        async def one(user: str) -> tuple[str, dict[str, Any]]:
            async with sem:
                self.actor_calls += 1
                return user, await self.sessions.deliver(user, event)

        results = await asyncio.gather(*(one(u) for u in recipients), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        forwards: dict[str, list[dict[str, Any]]] = {}
        routes = 0
        for r in results:
            if isinstance(r, BaseException):
                continue
            user, res = r
            if res["status"] == "filtered":
                continue
            item = EventItem(
                seq=int(res["seq"]),
                type=ev.type,
                id=ev.event_id,
                data=ev.data,
                task_id=ev.task_id,
                list_id=ev.list_id,
            )
            for replica, conns in res["routes"].items():
                routes += len(conns)
                if replica == self.settings.replica_id:
                    self.hub.deliver_local(user, list(conns), str(res["epoch"]), item)
                else:
                    forwards.setdefault(replica, []).append(
                        {
                            "user": user,
                            "conns": list(conns),
                            "epoch": res["epoch"],
                            "seq": res["seq"],
                        }
                    )
        # Deliver what succeeded before reporting failures: a retry re-sends, seq dedup drops.
        sent = await asyncio.gather(
            *(self._forward(replica, event, items) for replica, items in forwards.items()),
            return_exceptions=True,
        )
        failures += [s for s in sent if isinstance(s, BaseException)]
        if failures:
            raise ActorUnavailable(f"{len(failures)} deliveries failed: {failures[0]!r}")
        return routes

    async def _everyone(self) -> list[str]:
        self.actor_calls += 8
        return await self.sessions.connected_users()

    async def _forward(
        self, replica: str, event: dict[str, Any], items: list[dict[str, Any]]
    ) -> None:
        self.forwards += 1
        await self.dapr.publish(
            self.settings.pubsub,
            replica_topic(replica),
            {"from": self.settings.replica_id, "event": event, "items": items},
        )

    def receive_forward(self, body: dict[str, Any]) -> None:
        """A batch from another replica: one event, many (user, conns, epoch, seq)."""
        ev = body["event"]
        for it in body["items"]:
            item = EventItem.from_record({**ev, "seq": it["seq"]})
            self.hub.deliver_local(
                str(it["user"]), [str(c) for c in it["conns"]], str(it["epoch"]), item
            )
