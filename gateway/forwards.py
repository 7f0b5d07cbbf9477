"""The replica-to-replica forward batch: for each destination replica, ONE message per topic
batch carrying every (user, connections, epoch, record) it must write. Typed and validated on
receipt: a malformed batch is refused as a whole, never half-applied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict

from actors.session_core import EventRecord
from actors.session_types import EventRecordWire
from gateway import tracing
from vocab.json_types import WireMap
from vocab.wire_checks import _get, _list, _map, _str


class ForwardItemWire(TypedDict):
    user: str
    conns: list[str]
    epoch: str
    record: EventRecordWire
    trace: NotRequired[str]


# "from" is a keyword: the functional form.
ForwardBatchWire = TypedDict("ForwardBatchWire", {"from": str, "items": list[ForwardItemWire]})


@dataclass(frozen=True)
class ForwardItem:
    user: str
    conns: list[str]
    epoch: str
    record: EventRecord
    trace: str | None = None  # the delivery's traceparent (gateway/tracing.py); optional

    def to_wire(self) -> ForwardItemWire:
        out: ForwardItemWire = {"user": self.user, "conns": list(self.conns),
                                "epoch": self.epoch, "record": self.record.to_wire()}
        if self.trace is not None:
            out["trace"] = self.trace
        return out

    @classmethod
    def from_wire(cls, d: WireMap) -> ForwardItem:
        return cls(
            _str(_get(d, "user"), "user"),
            [_str(c, "conn") for c in _list(_get(d, "conns"), "conns")],
            _str(_get(d, "epoch"), "epoch"),
            EventRecord.from_wire(_map(_get(d, "record"), "record")),
            tracing.header_value(d.get("trace")),  # a bad one only means untraced
        )


@dataclass(frozen=True)
class ForwardBatch:
    sender: str
    items: list[ForwardItem]

    def to_wire(self) -> ForwardBatchWire:
        return {"from": self.sender, "items": [i.to_wire() for i in self.items]}

    @classmethod
    def from_wire(cls, d: WireMap) -> ForwardBatch:
        return cls(
            _str(_get(d, "from"), "from"),
            [ForwardItem.from_wire(_map(i, "item")) for i in _list(_get(d, "items"), "items")],
        )
