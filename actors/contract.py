"""The typed contract of every UserSession actor method: one request and one answer type each.

Both sides use these classes: the actor shell decodes requests and encodes answers, the gateway's
caller encodes requests and decodes answers. On the wire each is one msgpack map (actors/wire.py).
Decoding validates shapes and raises ValueError, so a malformed payload fails loudly instead of
running on half-parsed data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from actors.session_core import (
    AttachOutcome,
    DeliverStatus,
    EventRecord,
    Filters,
    IncomingEvent,
    Liveness,
    Routes,
)
from actors.session_types import EventRecordWire, IncomingEventWire
from vocab.filters import FiltersWire
from vocab.json_types import WireMap
from vocab.wire_checks import _bool, _float, _get, _int, _list, _map, _opt_str, _str

_STATUSES: tuple[DeliverStatus, ...] = ("appended", "duplicate", "filtered", "stale", "held")
_OUTCOMES: tuple[AttachOutcome, ...] = ("ok", "resync", "too_many_connections")


# -- wire forms: what each to_wire writes (from_wire reads an untrusted WireMap) ----------------


class _LiveWire(TypedDict):
    """The caller's registry snapshot, absent when the caller has none."""

    live: NotRequired[list[str]]
    as_of: NotRequired[float]


class DeliverRequestWire(_LiveWire):
    events: list[IncomingEventWire]


class DeliverAnswerWire(TypedDict):
    epoch: str
    results: list[list[str | int]]  # [status, seq] or [status, seq, newest]
    routes: Routes
    released: list[EventRecordWire]
    release_in: float


class AttachRequestWire(_LiveWire):
    conn: str
    replica: str
    device: str
    since: str | None


class AttachAnswerWire(TypedDict):
    outcome: AttachOutcome
    epoch: str
    head: int
    start: int
    resumed: bool
    reason: str
    events: list[EventRecordWire]
    more: bool
    filters: FiltersWire


class ReadRequestWire(TypedDict):
    epoch: str
    after: int
    limit: int


class ReadAnswerWire(TypedDict):
    resync: bool
    epoch: str
    head: int
    events: list[EventRecordWire]


class DetachRequestWire(TypedDict):
    conns: list[str]


class AckRequestWire(TypedDict):
    device: str
    seq: int


class AckAnswerWire(TypedDict):
    tail: int
    head: int


class FiltersMessageWire(TypedDict):
    filters: FiltersWire


def _routes_from_wire(v: object) -> Routes:
    return {
        _str(replica, "replica"): [_str(c, "route conn") for c in _list(conns, "route conns")]
        for replica, conns in _map(v, "routes").items()
    }


def _records(v: object) -> list[EventRecord]:
    return [EventRecord.from_wire(_map(r, "record")) for r in _list(v, "events")]


# -- deliver: several events of one user in one turn --------------------------------------------


def _live_to_wire(live: Liveness | None, out: _LiveWire) -> None:
    if live is not None:
        out["live"] = sorted(live.replicas)
        out["as_of"] = live.as_of


def _live_from_wire(d: WireMap) -> Liveness | None:
    if d.get("live") is None:
        return None
    return Liveness(frozenset(_str(r, "replica") for r in _list(d["live"], "live")),
                    _float(_get(d, "as_of"), "as_of"))


@dataclass(frozen=True)
class DeliverRequest:
    """Events of one user, recorded in one turn. No events: a release turn, which only records
    the held events that are due (the gateway's release timer sends it)."""

    events: list[IncomingEvent]
    live: Liveness | None = None  # the caller's registry snapshot: routes skip dead replicas

    def to_wire(self) -> DeliverRequestWire:
        out: DeliverRequestWire = {"events": [e.to_wire() for e in self.events]}
        _live_to_wire(self.live, out)
        return out

    @classmethod
    def from_wire(cls, d: WireMap) -> DeliverRequest:
        events = [IncomingEvent.from_wire(_map(e, "event")) for e in _list(_get(d, "events"), "e")]
        return cls(events, _live_from_wire(d))


@dataclass(frozen=True)
class Delivered:
    """``stale``: older than (or equal to) the task's newest recorded version, or after its
    delete: dropped for good. ``held``: a version is missing; the actor keeps the event and
    records it once the gap fills or the hold expires (then it comes back in some turn's
    ``released``): the message is done. Both have seq 0 and carry ``newest``, the newest version
    recorded for the task (for the log line)."""

    status: DeliverStatus
    seq: int  # assigned seq; the original seq for a duplicate; 0 when filtered or not retained
    newest: int = 0


@dataclass(frozen=True)
class DeliverAnswer:
    epoch: str
    results: list[Delivered]  # one per request event, same order
    routes: Routes  # the user's live connections after the turn
    # Held events of earlier turns recorded in this one (seq order): route them like appended
    # results. A request event held and released in the same turn is in ``results`` instead.
    released: list[EventRecord] = field(default_factory=list)
    # Seconds until the earliest event still held is due (0.0: none held): when to send a
    # release turn if nothing else comes for the user.
    release_in: float = 0.0

    def to_wire(self) -> DeliverAnswerWire:
        return {
            "epoch": self.epoch,
            # [status, seq], plus the task's newest version only where it means something.
            "results": [[r.status, r.seq, r.newest] if r.newest else [r.status, r.seq]
                        for r in self.results],
            "routes": {replica: list(conns) for replica, conns in self.routes.items()},
            "released": [e.to_wire() for e in self.released],
            "release_in": self.release_in,
        }

    @classmethod
    def from_wire(cls, d: WireMap) -> DeliverAnswer:
        results = []
        for item in _list(_get(d, "results"), "results"):
            parts = _list(item, "result")
            if len(parts) not in (2, 3):
                raise ValueError("result: expected [status, seq] or [status, seq, newest]")
            status, seq, newest = (*parts, 0) if len(parts) == 2 else parts
            if status not in _STATUSES:
                raise ValueError(f"bad deliver status {status!r}")
            results.append(Delivered(status, _int(seq, "seq"), _int(newest, "newest")))
        release_in = _float(d.get("release_in", 0.0), "release_in")
        if not release_in >= 0:
            raise ValueError(f"release_in must be >= 0, got {release_in}")
        return cls(_str(_get(d, "epoch"), "epoch"), results, _routes_from_wire(_get(d, "routes")),
                   _records(d.get("released", [])), release_in)


# -- attach / read: the first replay page comes in the same turn as the registration -----------


@dataclass(frozen=True)
class AttachRequest:
    conn: str
    replica: str
    device: str
    since: str | None  # "epoch:seq" or None
    live: Liveness | None = None  # the caller's registry snapshot: drops dead replicas' conns

    def to_wire(self) -> AttachRequestWire:
        out: AttachRequestWire = {"conn": self.conn, "replica": self.replica,
                                  "device": self.device, "since": self.since}
        _live_to_wire(self.live, out)
        return out

    @classmethod
    def from_wire(cls, d: WireMap) -> AttachRequest:
        return cls(
            _str(_get(d, "conn"), "conn"),
            _str(_get(d, "replica"), "replica"),
            _str(_get(d, "device"), "device"),
            _opt_str(d.get("since") or None, "since"),
            _live_from_wire(d),
        )


@dataclass(frozen=True)
class AttachAnswer:
    outcome: AttachOutcome
    epoch: str
    head: int
    start: int  # the stream continues after this seq
    resumed: bool
    reason: str  # why resync, else ""
    events: list[EventRecord] = field(default_factory=list)
    more: bool = False  # more replay pages follow (read them with ReadRequest)
    # The user's persisted filters: the gateway applies them to the shared broadcast stream,
    # which no user actor sees (the user log is filtered by the actor itself).
    filters: Filters = field(default_factory=Filters)

    def to_wire(self) -> AttachAnswerWire:
        return {"outcome": self.outcome, "epoch": self.epoch, "head": self.head,
                "start": self.start, "resumed": self.resumed, "reason": self.reason,
                "events": [e.to_wire() for e in self.events], "more": self.more,
                "filters": self.filters.to_wire()}

    @classmethod
    def from_wire(cls, d: WireMap) -> AttachAnswer:
        outcome = _get(d, "outcome")
        if outcome not in _OUTCOMES:
            raise ValueError(f"bad attach outcome {outcome!r}")
        return cls(
            outcome, _str(_get(d, "epoch"), "epoch"), _int(_get(d, "head"), "head"),
            _int(_get(d, "start"), "start"), _bool(_get(d, "resumed"), "resumed"),
            _str(_get(d, "reason"), "reason"), _records(d.get("events", [])),
            _bool(d.get("more", False), "more"),
            Filters.from_wire(_map(d.get("filters") or {}, "filters")),
        )


@dataclass(frozen=True)
class ReadRequest:
    epoch: str
    after: int
    limit: int

    def to_wire(self) -> ReadRequestWire:
        return {"epoch": self.epoch, "after": self.after, "limit": self.limit}

    @classmethod
    def from_wire(cls, d: WireMap) -> ReadRequest:
        return cls(_str(_get(d, "epoch"), "epoch"), _int(_get(d, "after"), "after"),
                   _int(d.get("limit", 500), "limit"))


@dataclass(frozen=True)
class ReadAnswer:
    resync: bool  # the position can't be honoured (other epoch or trimmed)
    epoch: str
    head: int
    events: list[EventRecord] = field(default_factory=list)

    def to_wire(self) -> ReadAnswerWire:
        return {"resync": self.resync, "epoch": self.epoch, "head": self.head,
                "events": [e.to_wire() for e in self.events]}

    @classmethod
    def from_wire(cls, d: WireMap) -> ReadAnswer:
        return cls(_bool(_get(d, "resync"), "resync"), _str(_get(d, "epoch"), "epoch"),
                   _int(_get(d, "head"), "head"), _records(d.get("events", [])))


# -- small state changes ---------------------------------------------------------------------


@dataclass(frozen=True)
class DetachRequest:
    conns: list[str]

    def to_wire(self) -> DetachRequestWire:
        return {"conns": list(self.conns)}

    @classmethod
    def from_wire(cls, d: WireMap) -> DetachRequest:
        return cls([_str(c, "conn") for c in _list(_get(d, "conns"), "conns")])


@dataclass(frozen=True)
class AckRequest:
    device: str
    seq: int

    def to_wire(self) -> AckRequestWire:
        return {"device": self.device, "seq": self.seq}

    @classmethod
    def from_wire(cls, d: WireMap) -> AckRequest:
        return cls(_str(_get(d, "device"), "device"), _int(_get(d, "seq"), "seq"))


@dataclass(frozen=True)
class AckAnswer:
    tail: int
    head: int

    def to_wire(self) -> AckAnswerWire:
        return {"tail": self.tail, "head": self.head}

    @classmethod
    def from_wire(cls, d: WireMap) -> AckAnswer:
        return cls(_int(_get(d, "tail"), "tail"), _int(_get(d, "head"), "head"))


@dataclass(frozen=True)
class FiltersMessage:
    """Request and answer of set_filters: the persisted filters (answer: as stored)."""

    filters: Filters

    def to_wire(self) -> FiltersMessageWire:
        return {"filters": self.filters.to_wire()}

    @classmethod
    def from_wire(cls, d: WireMap) -> FiltersMessage:
        return cls(Filters.from_wire(_map(d.get("filters") or {}, "filters")))
