"""A resume position: `epoch:seq` in one canonical text form, the same for server and clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from vocab.ids import POSITION_RE
from vocab.json_types import WireMap
from vocab.wire_checks import _check_epoch, _get, _int, _str


class PositionWire(TypedDict):
    epoch: str
    seq: int


@dataclass(frozen=True)
class Position:
    """``epoch:seq`` = the client has processed everything up to and including ``seq``."""

    epoch: str
    seq: int

    def __post_init__(self) -> None:
        _check_epoch(self.epoch)
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise ValueError(f"bad position seq {self.seq!r}")

    @staticmethod
    def parse(text: str) -> Position:
        """Parse ``"epoch:seq"``; ValueError on anything but the canonical form."""
        m = POSITION_RE.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"bad position {text!r}")
        return Position(m.group(1), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.epoch}:{self.seq}"

    def to_wire(self) -> PositionWire:
        return {"epoch": self.epoch, "seq": self.seq}

    @classmethod
    def from_wire(cls, d: WireMap) -> Position:
        return cls(epoch=_str(_get(d, "epoch"), "epoch"), seq=_int(_get(d, "seq"), "seq"))


@dataclass(frozen=True)
class ResumePoint:
    """Where a client resumes: its user stream position and, when it has one, its position in
    the shared broadcast stream. Text form ``epoch:seq`` or ``epoch:seq,bepoch:bseq`` (the `since`
    parameter and SSE ids; "," is outside both parts' alphabets, so the split is unambiguous)."""

    user: Position
    broadcast: Position | None = None

    @staticmethod
    def parse(text: str) -> ResumePoint:
        if not isinstance(text, str) or text.count(",") > 1:
            raise ValueError(f"bad resume point {text!r}")
        user, _, broadcast = text.partition(",")
        if _ and not broadcast:
            raise ValueError(f"bad resume point {text!r}")
        return ResumePoint(Position.parse(user),
                           Position.parse(broadcast) if broadcast else None)

    def __str__(self) -> str:
        return str(self.user) if self.broadcast is None else f"{self.user},{self.broadcast}"
