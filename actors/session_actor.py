"""UserSession actor shell: load meta, apply a session_core rule, write keys, save, answer.

State layout (one key per event plus a small meta key, never an ever-growing list):
  meta       -> SessionMeta.to_wire()
  ev:<seq>   -> EventRecord.to_wire()
All writes of one call go to daprd as one transaction (save_state), so meta and events agree.
"""

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from dapr.actor import Actor

from actors import session_core as core
from actors.interfaces import UserSessionInterface
from actors.wire import pack, unpack

log = logging.getLogger("actors.session")

META_KEY = "meta"
REPLAY_PAGE = 500  # events per attach/read answer; the gateway pages for more
# Bytes per answer: daprd refuses bodies over 4 MiB (dapr-http-max-request-size), so a page of
# large events must stop early rather than fail the whole replay.
REPLAY_BYTES = 1 << 20


def _limits_from_env() -> core.Limits:
    env = os.environ.get
    return core.Limits(
        max_events=int(env("TASKSYNC_RETENTION_EVENTS", "1000")),
        max_age_s=float(env("TASKSYNC_RETENTION_SECONDS", "86400")),
        max_connections=int(env("TASKSYNC_MAX_CONNECTIONS_PER_USER", "16")),
        lease_s=float(env("TASKSYNC_LEASE_SECONDS", "30")),
    )


LIMITS = _limits_from_env()


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def ev_key(seq: int) -> str:
    return f"ev:{seq}"


class UserSession(Actor, UserSessionInterface):
    async def _load(self) -> core.SessionMeta:
        found, raw = await self._state_manager.try_get_state(META_KEY)
        if found and isinstance(raw, dict):
            return core.SessionMeta.from_wire(raw)
        # No meta = the log starts from nothing: a new epoch tells clients to resync.
        return core.new_session(uuid.uuid4().hex[:16])

    async def _save(self, meta: core.SessionMeta, delete: list[int]) -> None:
        for seq in delete:
            await self._state_manager.try_remove_state(ev_key(seq))
        await self._state_manager.set_state(META_KEY, meta.to_wire())
        await self._state_manager.save_state()

    async def _read_events(self, first: int, last: int) -> list[dict[str, Any]]:
        """Events first..last, cut short after REPLAY_BYTES (always at least one). Events are
        immutable once written, so they are read past the state cache."""
        provider = self._runtime_ctx.state_provider
        actor_type = self._runtime_ctx.actor_type_info.type_name
        seqs = list(range(first, last + 1))
        out: list[dict[str, Any]] = []
        size = 0
        for i in range(0, len(seqs), 16):
            if out and size >= REPLAY_BYTES:
                break
            chunk = seqs[i : i + 16]
            got = await asyncio.gather(
                *(provider.try_load_state(actor_type, self.id.id, ev_key(s)) for s in chunk)
            )
            for seq, (found, raw) in zip(chunk, got, strict=True):
                if not found:
                    raise LookupError(f"event {seq} missing from the log")
                if out and size >= REPLAY_BYTES:
                    break
                size += len(json.dumps(raw))
                out.append(raw)
        return out

    async def _guard(
        self, payload: bytes, body: Callable[[dict[str, Any]], Awaitable[bytes]]
    ) -> bytes:
        try:
            return await body(unpack(payload))
        except BaseException:
            # The SDK keeps unsaved changes after a non-Dapr exception and would save them with
            # the next call: drop them so a failed call leaves no trace.
            await self._state_manager.clear_cache()
            raise

    async def deliver(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any]) -> bytes:
            ev = req["event"]
            meta = await self._load()
            res = core.deliver(
                meta,
                core.IncomingEvent(
                    id=str(ev["id"]),
                    type=str(ev["type"]),
                    data=dict(ev["data"]),
                    task_id=_opt_str(ev.get("task_id")),
                    list_id=_opt_str(ev.get("list_id")),
                ),
                time.time(),
                LIMITS,
            )
            if res.status == "duplicate":
                # Nothing changes; routes are returned so a redelivery can be re-sent.
                return pack(
                    {
                        "status": res.status,
                        "seq": res.seq,
                        "routes": res.routes,
                        "epoch": meta.epoch,
                    }
                )
            if res.record is not None:
                await self._state_manager.set_state(ev_key(res.record.seq), res.record.to_wire())
            await self._save(meta, res.delete)
            return pack(
                {"status": res.status, "seq": res.seq, "routes": res.routes, "epoch": meta.epoch}
            )

        return await self._guard(payload, body)

    async def attach(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any]) -> bytes:
            meta = await self._load()
            since = core.Position.parse(req["since"]) if req.get("since") else None
            res = core.attach(
                meta,
                str(req["conn"]),
                str(req["replica"]),
                str(req["device"]),
                since,
                time.time(),
                LIMITS,
            )
            out: dict[str, Any] = {
                "outcome": res.outcome,
                "epoch": res.epoch,
                "head": res.head,
                "start": res.start,
                "resumed": res.resumed,
                "reason": res.reason,
                "events": [],
                "more": False,
            }
            if res.outcome == "too_many_connections":
                return pack(out)
            last = min(res.head, res.replay_from + REPLAY_PAGE - 1)
            if res.outcome == "ok" and res.replay_from <= last:
                events = await self._read_events(res.replay_from, last)
                out["events"] = events
                out["more"] = int(events[-1]["seq"]) < res.head
            await self._save(meta, [])
            return pack(out)

        return await self._guard(payload, body)

    async def read(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any]) -> bytes:
            meta = await self._load()
            if req.get("epoch") != meta.epoch:
                return pack({"resync": True, "epoch": meta.epoch, "head": meta.head})
            limit = max(1, min(int(req.get("limit", REPLAY_PAGE)), REPLAY_PAGE))
            rng = core.read_range(meta, int(req["after"]), limit)
            if rng is None:
                return pack({"resync": True, "epoch": meta.epoch, "head": meta.head})
            first, last = rng
            events = await self._read_events(first, last) if first <= last else []
            return pack({"resync": False, "epoch": meta.epoch, "head": meta.head, "events": events})

        return await self._guard(payload, body)

    async def detach(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any]) -> bytes:
            meta = await self._load()
            core.detach(meta, str(req["conn"]))
            await self._save(meta, [])
            return pack({"ok": True})

        return await self._guard(payload, body)

    async def renew(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any]) -> bytes:
            meta = await self._load()
            unknown = core.renew(
                meta, str(req["replica"]), [str(c) for c in req["conns"]], time.time(), LIMITS
            )
            await self._save(meta, [])
            return pack({"unknown": unknown})

        return await self._guard(payload, body)

    async def ack(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any]) -> bytes:
            meta = await self._load()
            delete = core.ack(meta, str(req["device"]), int(req["seq"]), time.time(), LIMITS)
            await self._save(meta, delete)
            return pack({"ok": True, "tail": meta.tail, "head": meta.head})

        return await self._guard(payload, body)

    async def set_filters(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any]) -> bytes:
            meta = await self._load()
            filters = core.Filters.from_wire(req.get("filters") or {})
            core.set_filters(meta, filters)
            await self._save(meta, [])
            return pack({"filters": filters.to_wire()})

        return await self._guard(payload, body)

    async def inspect(self, payload: bytes) -> bytes:
        async def body(req: dict[str, Any]) -> bytes:
            meta = await self._load()
            return pack({"meta": meta.to_wire()})

        return await self._guard(payload, body)
