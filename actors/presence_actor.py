"""Presence actor shell: load, apply a presence_core rule, save, answer."""

import time
from typing import Any

from dapr.actor import Actor

from actors import presence_core as core
from actors.interfaces import PresenceInterface
from actors.wire import pack, unpack

STATE_KEY = "presence"


class Presence(Actor, PresenceInterface):
    async def _load(self) -> core.PresenceState:
        found, raw = await self._state_manager.try_get_state(STATE_KEY)
        if found and isinstance(raw, dict):
            return core.PresenceState.from_wire(raw)
        return core.PresenceState()

    async def _commit(self, state: core.PresenceState) -> None:
        await self._state_manager.set_state(STATE_KEY, state.to_wire())
        await self._state_manager.save_state()

    async def _guard(self, payload: bytes, mode: str) -> bytes:
        try:
            req: dict[str, Any] = unpack(payload)
            state = await self._load()
            now = time.time()
            users = [str(u) for u in req.get("users", [])]
            replica = str(req.get("replica", ""))
            if mode == "renew":
                # Renewal only ever adds: a periodic full list that removed absentees would race
                # with a join that happened after the list was taken. Departures are explicit
                # (leave) or expire with their lease.
                core.join(state, replica, users, now, float(req.get("lease", 30.0)))
            elif mode == "leave":
                core.leave(state, replica, users, now)
            else:
                return pack({"users": core.live_users(state, now)})
            await self._commit(state)
            return pack({"ok": True})
        except BaseException:
            # The SDK keeps unsaved changes after a non-Dapr exception: drop them.
            await self._state_manager.clear_cache()
            raise

    async def renew(self, payload: bytes) -> bytes:
        return await self._guard(payload, "renew")

    async def leave(self, payload: bytes) -> bytes:
        return await self._guard(payload, "leave")

    async def list_users(self, payload: bytes) -> bytes:
        return await self._guard(payload, "list")
