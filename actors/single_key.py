"""Shell shared by the small actors whose whole state is one JSON value under one key (the
replica registry): kept in memory while active, written whole after each change."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from dapr.actor import Actor

from actors import memory_generation
from actors.state_client import STATE
from vocab.json_types import WireMap


class Wire(Protocol):
    def to_wire(self) -> WireMap: ...


S = TypeVar("S", bound=Wire)


class SingleKeyActor(Actor, Generic[S]):
    TYPE_NAME = ""
    STATE_KEY = ""
    _value: S | None = None
    _generation = -1

    def _decode(self, raw: WireMap | None) -> S:
        raise NotImplementedError

    async def _load(self) -> S:
        if self._value is None or self._generation != memory_generation.current():
            self._generation = memory_generation.current()
            raw = await STATE.get(self.TYPE_NAME, self.id.id, self.STATE_KEY)
            self._value = self._decode(raw if isinstance(raw, dict) else None)
        return self._value

    async def _write(self, value: S) -> None:
        try:
            await STATE.transact(
                self.TYPE_NAME, self.id.id, [("upsert", self.STATE_KEY, value.to_wire())]
            )
        except BaseException:
            self._value = None  # memory may be ahead of the store: reload next turn
            raise
