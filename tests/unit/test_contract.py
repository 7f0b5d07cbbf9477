"""The actor contract (actors/contract.py): every request and answer survives msgpack both ways,
and malformed payloads are refused with ValueError, never half-parsed."""

from __future__ import annotations

from typing import Any

import pytest

from actors import contract as c
from actors.session_core import EventRecord, Filters, IncomingEvent, Liveness
from actors.wire import pack, unpack
from gateway.forwards import ForwardBatch, ForwardItem

REC = EventRecord(3, "e3", "task_created", {"k": "v", "n": [1, 2.5, None]}, "t", None, 1.25)
EV = IncomingEvent("e1", "task_updated", {"title": "2024-01-02-abc", "d": "5m"}, "t1", "l1")

MESSAGES: list[Any] = [
    c.DeliverRequest([EV, EV]),
    c.DeliverRequest([EV], Liveness(frozenset({"gw-a", "gw-b"}), 12.5)),
    c.DeliverAnswer("ep", [c.Delivered("appended", 4), c.Delivered("filtered", 0)],
                    {"gw-a": ["gw-a.1", "gw-a.2"]}),
    c.DeliverRequest([IncomingEvent("e2", "task_updated", {}, "t1", None, 7), EV]),
    c.DeliverAnswer("ep", [c.Delivered("stale", 0, 9), c.Delivered("held", 0, 3),
                           c.Delivered("held", 0), c.Delivered("appended", 5)], {}),
    # A release turn: no events; earlier held events recorded now, one still held.
    c.DeliverRequest([]),
    c.DeliverAnswer("ep", [], {"gw-b": ["gw-b.1"]}, [REC], 0.25),
    c.DeliverAnswer("ep", [c.Delivered("held", 0, 1)], {}, [], 0.5),
    c.AttachRequest("gw-a.1", "gw-a", "phone", "ep:3"),
    c.AttachRequest("gw-a.1", "gw-a", "phone", None),
    c.AttachAnswer("ok", "ep", 9, 3, True, "", [REC], True),
    c.AttachAnswer("resync", "ep", 9, 9, False, "too_old"),
    c.ReadRequest("ep", 3, 500),
    c.ReadAnswer(False, "ep", 9, [REC]),
    c.DetachRequest(["a", "b"]),
    c.AttachRequest("gw-a.1", "gw-a", "phone", None, Liveness(frozenset({"gw-a"}), 5.5)),
    c.AckRequest("phone", 5),
    c.AckAnswer(2, 5),
    c.FiltersMessage(Filters(types=frozenset({"task_created"}), list_ids=frozenset())),
    ForwardBatch("gw-a", [ForwardItem("u1", ["gw-b.1"], "ep", REC)]),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_msgpack(msg: Any) -> None:
    assert type(msg).from_wire(unpack(pack(msg.to_wire()))) == msg


BAD: list[tuple[type[Any], dict[str, Any]]] = [
    (c.DeliverRequest, {"events": [[]]}),
    (c.DeliverAnswer, {"epoch": "e", "results": [], "routes": {}, "released": [{"seq": 1}]}),
    (c.DeliverAnswer, {"epoch": "e", "results": [], "routes": {}, "release_in": -1}),
    (c.DeliverAnswer, {"epoch": "e", "results": [], "routes": {}, "release_in": "soon"}),
    (c.DeliverRequest, {"events": [{"id": 1, "type": "t", "data": {}}]}),
    (c.DeliverRequest, {}),
    (c.DeliverAnswer, {"epoch": "e", "results": [["lost", 1]], "routes": {}}),
    (c.DeliverAnswer, {"epoch": "e", "results": [["appended", "1"]], "routes": {}}),
    (c.DeliverAnswer, {"epoch": "e", "results": [], "routes": {"r": "c"}}),
    (c.DeliverAnswer, {"epoch": "e", "results": [["stale", 0, "9"]], "routes": {}}),
    (c.DeliverAnswer, {"epoch": "e", "results": [["stale", 0, 9, 1]], "routes": {}}),
    (c.DeliverRequest, {"events": [{"id": "e", "type": "t", "data": {}, "version": 0}]}),
    (c.DeliverRequest, {"events": [{"id": "e", "type": "t", "data": {}, "version": True}]}),
    (c.DeliverRequest, {"events": [{"id": "e", "type": "t", "data": {}, "version": "3"}]}),
    (c.AttachRequest, {"conn": "c", "replica": "r", "device": 5, "since": None}),
    (c.AttachAnswer, {"outcome": "maybe", "epoch": "e", "head": 0, "start": 0,
                      "resumed": False, "reason": ""}),
    (c.AttachAnswer, {"outcome": "ok", "epoch": "e", "head": 0, "start": 0, "resumed": 1,
                      "reason": ""}),
    (c.AttachAnswer, {"outcome": "ok", "epoch": "e", "head": True, "start": 0,
                      "resumed": False, "reason": ""}),
    (c.ReadAnswer, {"resync": False, "epoch": "e", "head": 1, "events": [{"seq": 1}]}),
    (c.AckRequest, {"device": "d", "seq": 1.5}),
    (c.AttachRequest, {"conn": "c", "replica": "r", "device": "d", "live": ["r"]}),
    (c.DetachRequest, {"conns": "abc"}),
    (ForwardBatch, {"from": "gw", "items": [{"user": "u", "conns": [], "epoch": "e"}]}),
    (ForwardBatch, {"from": "gw", "items": {}}),
]


@pytest.mark.parametrize(("cls", "wire"), BAD, ids=lambda x: getattr(x, "__name__", ""))
def test_malformed_is_refused(cls: type[Any], wire: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        cls.from_wire(wire)


def test_an_answer_without_released_fields_reads_as_none_released() -> None:
    """An actor of the previous version (rolling update) answers without them."""
    old = {"epoch": "e", "results": [["held", 0, 2]], "routes": {}}
    answer = c.DeliverAnswer.from_wire(old)
    assert (answer.released, answer.release_in) == ([], 0.0)
