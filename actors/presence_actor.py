"""Presence actor shell (one per shard): load, apply a presence_core rule, write, answer."""

from __future__ import annotations

import time

from actors import presence_core as core
from actors.interfaces import PresenceInterface
from actors.session_actor import LIMITS
from actors.session_core import Liveness
from actors.single_key import SingleKeyActor
from actors.wire import pack, unpack
from vocab.json_types import WireMap
from vocab.wire_checks import _float, _get, _list, _str


def _users(req: WireMap) -> list[str]:
    return [_str(u, "user") for u in _list(req.get("users", []), "users")]


class Presence(SingleKeyActor[core.PresenceState], PresenceInterface):
    TYPE_NAME = "Presence"
    STATE_KEY = "presence"

    def _decode(self, raw: WireMap | None) -> core.PresenceState:
        return core.PresenceState() if raw is None else core.PresenceState.from_wire(raw)

    async def join(self, payload: bytes) -> bytes:
        req = unpack(payload)
        state = await self._load()
        core.join(state, _str(_get(req, "replica"), "replica"), _users(req), time.time())
        await self._write(state)
        return pack({"ok": True})

    async def leave(self, payload: bytes) -> bytes:
        req = unpack(payload)
        state = await self._load()
        core.leave(state, _str(_get(req, "replica"), "replica"), _users(req))
        await self._write(state)
        return pack({"ok": True})

    async def list_users(self, payload: bytes) -> bytes:
        """Users with a connection on a live replica; the caller's snapshot prunes the rest."""
        req = unpack(payload)
        state = await self._load()
        if "live" in req:
            live = Liveness(frozenset(_str(r, "replica") for r in _list(req["live"], "live")),
                            _float(_get(req, "as_of"), "as_of"))
            if core.prune(state, live, LIMITS.replica_grace_s):
                await self._write(state)
        return pack({"users": core.users_of(state)})
