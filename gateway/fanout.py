"""Targeted fan-out of a batch of topic messages, and delivery of batches other replicas forward.

Messages arrive in bulk (Dapr bulk subscribe). They are grouped by recipient: ONE actor call per
user carries every event of the batch for that user, in arrival order. The actor records them
(dedup, filters, seq) and answers the user's routes. This replica writes to its own connections
and sends ONE forward per other replica for the whole batch. Each message gets its own status:
a failure retries only the messages it touched, and since `deliver` is idempotent per event id
and connections drop duplicate seqs, a retry never shows a client anything twice.

Per-task order (actors/task_order.py): an event the actor answers `held` (an earlier version of
its task is missing) is answered RETRY, so Dapr redelivers it after its backoff and the actor
records it then; a `stale` one (superseded by a later version already recorded) is done: logged,
counted by the actor, never routed.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from actors.session_core import EventRecord, IncomingEvent
from gateway.actor_client import ActorUnavailable
from gateway.config import Settings
from gateway.forwards import ForwardBatch, ForwardItem
from gateway.hub import Hub
from gateway.outbox import Outbox
from gateway.peers import Peers, PeerUnavailable
from gateway.sessions import SessionsPort
from gateway.topic_schema import TaskEvent

log = logging.getLogger("gateway.fanout")

DELIVER_CONCURRENCY = 64


@dataclass
class _Pending:
    """What one recipient needs from this batch: its events, and the messages they came from."""

    events: list[IncomingEvent]
    sources: list[int]  # index of the message each event came from


class Fanout:
    def __init__(self, settings: Settings, sessions: SessionsPort, hub: Hub, peers: Peers) -> None:
        self.settings = settings
        self.sessions = sessions
        self.hub = hub
        self.peers = peers
        self._outboxes: dict[str, Outbox[ForwardItem]] = {}
        # Counters for /internal/stats (benchmarks report actor calls per event from them).
        self.actor_calls = 0
        self.events = 0
        self.forwards = 0
        self.held = 0  # events answered RETRY because an earlier version of the task is missing
        self.stale = 0  # events superseded by a later version of their task

    async def handle(self, ev: TaskEvent) -> None:
        """One message; raises ActorUnavailable when it must be retried."""
        (ok,) = await self.handle_batch([ev])
        if not ok:
            raise ActorUnavailable(f"event {ev.event_id}: delivery failed, retry")

    async def handle_batch(self, batch: Sequence[TaskEvent]) -> list[bool]:
        """Deliver a batch; returns, per message, True when done, False when it must be retried
        (an actor or a forward failed for at least one of its recipients)."""
        self.events += len(batch)
        ok = [True] * len(batch)
        pending: dict[str, _Pending] = {}
        everyone: list[str] | None = None
        for i, ev in enumerate(batch):
            if ev.audience is None and everyone is None:
                try:
                    everyone = await self._everyone()
                except ActorUnavailable as e:
                    log.warning("broadcast audience unavailable: %s", e)
                    everyone = []
                    ok = [o and b.audience is not None for o, b in zip(ok, batch, strict=True)]
            recipients = ev.audience if ev.audience is not None else everyone or []
            item = IncomingEvent(ev.event_id, ev.type, ev.data, ev.task_id, ev.list_id,
                                 ev.version)
            for user in dict.fromkeys(recipients):
                p = pending.setdefault(user, _Pending([], []))
                p.events.append(item)
                p.sources.append(i)

        # Forwards leave as soon as a user's answer is in (batched per replica by the outbox),
        # not after the slowest actor call of the batch.
        forwarded: list[tuple[int, asyncio.Future[None]]] = []
        sem = asyncio.Semaphore(DELIVER_CONCURRENCY)
        now = time.time()

        async def one(user: str, p: _Pending) -> None:
            async with sem:
                self.actor_calls += 1
                try:
                    answer = await self.sessions.deliver(user, p.events, self.hub.liveness)
                except ActorUnavailable as e:
                    log.warning("deliver to %s failed (%d events, retried): %s",
                                user, len(p.events), e)
                    for i in p.sources:
                        ok[i] = False
                    return
            done = zip(p.events, p.sources, answer.results, strict=True)
            # In seq order: a held event released later in the same turn got a later seq.
            for ev, src, res in sorted(done, key=lambda d: d[2].seq):
                if res.status == "held":
                    ok[src] = False  # redelivered by Dapr; recorded once the gap fills or expires
                    self.held += 1
                    continue
                if res.status == "stale":
                    self.stale += 1
                    log.info("stale event %s for %s: task %s version %s <= newest %s (or after "
                             "its delete): superseded, not delivered", ev.id, user, ev.task_id,
                             ev.version, res.newest)
                    continue
                if res.seq <= 0:
                    continue  # filtered, or a duplicate with nothing left to re-send
                record = EventRecord(res.seq, ev.id, ev.type, ev.data, ev.task_id, ev.list_id, now)
                for replica, conns in answer.routes.items():
                    if replica == self.settings.replica_id:
                        self.hub.deliver_local(user, conns, answer.epoch, record)
                    else:
                        item = ForwardItem(user, conns, answer.epoch, record)
                        forwarded.append((src, self._outbox(replica).add(item)))

        await asyncio.gather(*(one(u, p) for u, p in pending.items()))
        sent = await asyncio.gather(*(f for _, f in forwarded), return_exceptions=True)
        failed = 0
        for (src, _), result in zip(forwarded, sent, strict=True):
            if isinstance(result, ActorUnavailable):
                ok[src] = False
                failed += 1
            elif isinstance(result, BaseException):
                raise result  # a bug: let it surface with its traceback
        if failed:
            log.warning("%d forwards failed: their messages are retried", failed)
        return ok

    def _outbox(self, replica: str) -> Outbox[ForwardItem]:
        box = self._outboxes.get(replica)
        if box is None:
            async def send(items: list[ForwardItem]) -> None:
                await self._forward(replica, items)

            box = self._outboxes[replica] = Outbox[ForwardItem](send)
        return box

    async def _everyone(self) -> list[str]:
        self.actor_calls += 8
        return await self.sessions.connected_users(self.hub.liveness)

    async def _forward(self, replica: str, items: list[ForwardItem]) -> None:
        self.forwards += 1
        url = await self.hub.peer_url(replica)
        if url is None:
            raise PeerUnavailable(f"no address for replica {replica} in the registry")
        await self.peers.send(url, ForwardBatch(self.settings.replica_id, items))

    def receive_forward(self, batch: ForwardBatch) -> None:
        for it in batch.items:
            self.hub.deliver_local(it.user, it.conns, it.epoch, it.record)
