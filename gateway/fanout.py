"""Targeted fan-out of a batch of topic messages, and delivery of batches other replicas forward.

Messages arrive in bulk (Dapr bulk subscribe). They are grouped by recipient: ONE actor call per
user carries every event of the batch for that user, in arrival order. The actor records them
(dedup, filters, seq) and answers the user's routes. This replica writes to its own connections
and sends ONE forward per other replica for the whole batch. Each message gets its own status:
a failure retries only the messages it touched, and since `deliver` is idempotent per event id
and connections drop duplicate seqs, a retry never shows a client anything twice.

Per-task order (actors/task_order.py): an event the actor answers `held` (an earlier version of
its task is missing) is done for this message: the actor keeps it and records it in a later turn,
once the gap fills or the hold is over. Such turns answer the released records, routed here
exactly like appended results, in seq order with them. While the answer says events are still
held, this replica schedules one release turn for the user (gateway/release_timers.py) so they
never wait for another publish. A `stale` one (superseded by a later version already recorded) is
done too: logged, counted by the actor, never routed.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from actors.contract import DeliverAnswer
from actors.session_core import EventRecord, IncomingEvent
from gateway import tracing
from gateway.actor_client import ActorUnavailable
from gateway.config import Settings
from gateway.forwards import ForwardBatch, ForwardItem
from gateway.hub import Hub
from gateway.outbox import Outbox
from gateway.peers import Peers, PeerUnavailable
from gateway.release_timers import ReleaseTimers
from gateway.sessions import SessionsPort
from gateway.topic_schema import TaskEvent
from vocab.ids import BROADCAST_LOG

log = logging.getLogger("gateway.fanout")

DELIVER_CONCURRENCY = 64
# A failed forward is sent again 0.1, 0.2, 0.4 ... 2 s later: 8 tries span about a lease (15 s).
FORWARD_RETRIES = 8
FORWARD_BACKOFF_S = 0.1
FORWARD_BACKOFF_MAX_S = 2.0
RELEASE_RETRY_S = 1.0  # a failed release turn is tried again this much later...
RELEASE_ATTEMPTS = 3  # ...this many times; then the user's next deliver releases


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
        self._outboxes: dict[str, Outbox[ForwardItem, None]] = {}
        # Topic messages delivered one per request (no bulk subscribe: docs/operations.md,
        # Failover) still reach the actors in batches: those that arrive while a batch is in
        # flight go out together, one actor call per user.
        self._ingest = Outbox[TaskEvent, bool](self.ingest_batch)
        # Counters for /internal/stats (benchmarks report actor calls per event from them).
        self.actor_calls = 0
        self.events = 0
        self.forwards = 0
        self.bugs = 0  # batches that failed with something other than a transient error
        self.forward_failures = 0
        self.held = 0  # events the actor held because an earlier version of the task is missing
        self.released = 0  # held events of earlier turns routed when a later turn recorded them
        self.stale = 0  # events superseded by a later version of their task
        self.release_timers = ReleaseTimers(self._release)
        self._release_failures: dict[str, int] = {}

    async def handle(self, ev: TaskEvent) -> None:
        """One message, batched with the others in flight; raises ActorUnavailable when it must
        be retried."""
        if not await self._ingest.add(ev):
            raise ActorUnavailable(f"event {ev.event.id}: delivery failed, retry")

    async def ingest_batch(self, batch: Sequence[TaskEvent]) -> list[bool]:
        """handle_batch for topic messages. A failure that is not transient (those come back as
        False) is a bug: counted and logged once per batch, then raised to every message of the
        batch so daprd retries them."""
        try:
            return await self.handle_batch(batch)
        except Exception:
            self.bugs += 1
            log.exception("fan-out of a batch of %d failed", len(batch))
            raise

    async def handle_batch(self, batch: Sequence[TaskEvent]) -> list[bool]:
        """Deliver a batch; returns, per message, True when done, False when it must be retried
        (an actor call failed for at least one of its recipients; forwards are best effort)."""
        self.events += len(batch)
        ok = [True] * len(batch)
        pending: dict[str, _Pending] = {}
        for i, ev in enumerate(batch):
            # No audience: recorded once in the shared broadcast log, not once per user.
            recipients = ev.audience if ev.audience is not None else [BROADCAST_LOG]
            item = ev.event
            for user in dict.fromkeys(recipients):
                p = pending.setdefault(user, _Pending([], []))
                p.events.append(item)
                p.sources.append(i)

        # Forwards leave as soon as a user's answer is in (batched per replica by the outbox),
        # not after the slowest actor call of the batch.
        sem = asyncio.Semaphore(DELIVER_CONCURRENCY)
        now = time.time()

        async def one(user: str, p: _Pending) -> None:
            tracing.adopt(batch[p.sources[0]].trace)  # this task only: the first event's trace
            async with sem:
                self.actor_calls += 1
                try:
                    answer = await self.sessions.deliver(user, p.events, self.hub.liveness)
                except ActorUnavailable as e:
                    log.warning("deliver to %s failed (%d events, retried): %s",
                                user, len(p.events), e, extra={"user": user})
                    for i in p.sources:
                        ok[i] = False
                    return
            records: list[EventRecord] = []
            for ev, src, res in zip(p.events, p.sources, answer.results, strict=True):
                if res.status == "held":
                    self.held += 1  # kept by the actor: released by a later turn
                    continue
                if res.status == "stale":
                    self.stale += 1
                    log.info("stale event %s for %s: task %s version %s <= newest %s (or after "
                             "its delete): superseded, not delivered", ev.id, user, ev.task_id,
                             ev.version, res.newest, extra={"user": user, "event": ev.id})
                    continue
                if res.seq <= 0:
                    continue  # filtered, or a duplicate with nothing left to re-send
                # ts: the publish time when known (the latency metric reads it), else now.
                ts = batch[src].published_at or now
                records.append(ev.recorded(res.seq, ts))
            self._route(user, answer, records)

        await asyncio.gather(*(one(u, p) for u, p in pending.items()))
        return ok

    def _route(self, user: str, answer: DeliverAnswer, records: list[EventRecord]) -> None:
        """Write one user's records to this replica's connections and queue the forwards, in
        seq order: the turn's own events and the events it released. Then, while the actor
        still holds events for the user, schedule a release turn."""
        self.released += len(answer.released)
        ordered = sorted(records + answer.released, key=lambda r: r.seq)
        if user == BROADCAST_LOG:
            self._route_broadcast(answer.epoch, ordered)
        for record in ordered:
            for replica, conns in answer.routes.items():
                if replica == self.settings.replica_id:
                    self.hub.deliver_local(user, conns, answer.epoch, record)
                else:
                    self._send_forward(replica, ForwardItem(user, conns, answer.epoch, record,
                                                            tracing.active_header()))
        if answer.release_in > 0 and not self.hub.draining:
            self.release_timers.arm(user, answer.release_in)

    def _route_broadcast(self, epoch: str, records: list[EventRecord]) -> None:
        """Broadcasts go to every connection here and ONE forward per other live replica."""
        for record in records:
            self.hub.broadcasts.deliver(epoch, record)
        me = self.settings.replica_id
        for replica in self.hub.members.replicas():
            if replica != me:
                for record in records:
                    self._send_forward(replica, ForwardItem(BROADCAST_LOG, [], epoch, record))

    def _send_forward(self, replica: str, item: ForwardItem, attempt: int = 0) -> None:
        fut = self._outbox(replica).add(item)
        fut.add_done_callback(lambda f: self._forward_done(f, replica, item, attempt))

    def _forward_done(
        self, fut: asyncio.Future[None], replica: str, item: ForwardItem, attempt: int
    ) -> None:
        """A forward that failed is sent again in the background, with backoff, until it lands,
        the destination drops out of the registry (its clients resume from the log) or about a
        lease has passed. The topic message is not held for it: RETRYing it instead stalled this
        replica's whole intake until a dead replica's lease ran out (docs/reliability.md). The
        event is in the log either way; a forward lost for good (this replica died too) reaches
        a live destination's client with its next event (as a gap) or its tail check."""
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            return
        if not isinstance(exc, ActorUnavailable):
            self.bugs += 1
            log.error("forward to %s failed with a bug", replica, exc_info=exc)
            return
        self.forward_failures += 1
        live = self.hub.liveness
        # A replica newer than our snapshot is not "gone": judge only after a few tries.
        gone = attempt >= 2 and live is not None and replica not in live.replicas
        if gone or attempt >= FORWARD_RETRIES or self.hub.draining:
            log.warning("forward to %s given up after %d attempts (%s): its clients catch up "
                        "from the log", replica, attempt + 1, exc,
                        extra={"user": item.user, "event": item.record.id})
            return
        delay = min(FORWARD_BACKOFF_S * 2**attempt, FORWARD_BACKOFF_MAX_S)
        asyncio.get_running_loop().call_later(
            delay, self._send_forward, replica, item, attempt + 1)

    async def _release(self, user: str) -> None:
        """A release turn (a deliver without events) for a user whose actor holds events."""
        if self.hub.draining:
            return
        self.actor_calls += 1
        try:
            answer = await self.sessions.deliver(user, [], self.hub.liveness)
        except ActorUnavailable as e:
            tries = self._release_failures[user] = self._release_failures.get(user, 0) + 1
            if tries < RELEASE_ATTEMPTS:
                log.warning("release turn for %s failed (%s): tried again", user, e)
                self.release_timers.arm(user, RELEASE_RETRY_S)
            else:
                del self._release_failures[user]
                log.warning("release turn for %s failed %d times (%s): its next deliver "
                            "releases", user, tries, e)
            return
        self._release_failures.pop(user, None)
        self._route(user, answer, [])

    def close(self) -> None:
        """Drain: no release turn from this replica any more (the next deliver releases)."""
        self.release_timers.close()

    def _outbox(self, replica: str) -> Outbox[ForwardItem, None]:
        box = self._outboxes.get(replica)
        if box is None:
            async def send(items: list[ForwardItem]) -> list[None]:
                await self._forward(replica, items)
                return [None] * len(items)

            box = self._outboxes[replica] = Outbox[ForwardItem, None](send)
        return box

    async def _forward(self, replica: str, items: list[ForwardItem]) -> None:
        self.forwards += 1
        url = await self.hub.members.peer_url(replica)
        if url is None:
            raise PeerUnavailable(f"no address for replica {replica} in the registry")
        await self.peers.send(url, ForwardBatch(self.settings.replica_id, items))

    def receive_forward(self, batch: ForwardBatch) -> None:
        for it in batch.items:
            with tracing.adopted(it.trace):
                if it.user == BROADCAST_LOG:
                    self.hub.broadcasts.deliver(it.epoch, it.record)
                else:
                    self.hub.deliver_local(it.user, it.conns, it.epoch, it.record)
