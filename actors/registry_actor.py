"""ReplicaRegistry actor shell (one instance, id "default"): gateway replicas renew their lease
here every few seconds and get back the live snapshot. O(replicas) calls, whatever the number of
connections."""

from __future__ import annotations

import time

from actors import replica_core as core
from actors.interfaces import ReplicaRegistryInterface
from actors.single_key import SingleKeyActor
from actors.wire import pack, unpack
from vocab.json_types import WireMap
from vocab.wire_checks import _float, _get, _str


def _answer(reg: core.Registry, now: float) -> bytes:
    live = core.snapshot(reg, now)
    return pack({"live": sorted(live.replicas), "dead": sorted(core.dead(reg, now)),
                 "as_of": live.as_of, "urls": core.live_urls(reg, now)})


class ReplicaRegistry(SingleKeyActor[core.Registry], ReplicaRegistryInterface):
    TYPE_NAME = "ReplicaRegistry"
    STATE_KEY = "registry"

    def _decode(self, raw: WireMap | None) -> core.Registry:
        return core.Registry() if raw is None else core.Registry.from_wire(raw)

    async def heartbeat(self, payload: bytes) -> bytes:
        req = unpack(payload)
        reg = await self._load()
        now = time.time()
        core.heartbeat(reg, _str(_get(req, "replica"), "replica"), now,
                       _float(_get(req, "lease"), "lease"), _str(req.get("url", ""), "url"))
        await self._write(reg)
        return _answer(reg, now)

    async def leave(self, payload: bytes) -> bytes:
        req = unpack(payload)
        reg = await self._load()
        now = time.time()
        core.leave(reg, _str(_get(req, "replica"), "replica"), now)
        await self._write(reg)
        return _answer(reg, now)

    async def snapshot(self, payload: bytes) -> bytes:
        return _answer(await self._load(), time.time())
