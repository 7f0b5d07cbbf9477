"""Incremental text/event-stream parser (the WHATWG event-stream interpretation rules).

Pure: feed it chunks as they come off the socket, in any split, and it returns what completed.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class SseMessage:
    data: str
    event: str = "message"
    id: str | None = None  # the last event id in force when this message was dispatched


@dataclass(frozen=True)
class SseComment:
    """A ``:`` line. Carries no data, but proves the stream is alive (server heartbeats)."""

    text: str


SseItem = SseMessage | SseComment


class SseParser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._first = True
        self._data: list[str] = []
        self._event = ""
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: str | bytes) -> list[SseItem]:
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text:
            self._skip_lf = False
            text = text.removeprefix("\n")
        self._buf += text
        out: list[SseItem] = []
        while True:
            cut = _line_end(self._buf)
            if cut is None:
                break
            end, nxt = cut
            if nxt == len(self._buf) and self._buf[end] == "\r":
                # A CR at the very end may be the first half of CRLF split across chunks.
                self._skip_lf = True
            line, self._buf = self._buf[:end], self._buf[nxt:]
            item = self._line(line)
            if item is not None:
                out.append(item)
        return out

    def _line(self, line: str) -> SseItem | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return SseComment(line[1:].removeprefix(" "))
        name, sep, value = line.partition(":")
        if sep:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:  # the spec ignores ids with NUL
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)
        return None  # unknown fields are ignored

    def _dispatch(self) -> SseMessage | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseMessage("\n".join(data), event or "message", self.last_event_id)


def _line_end(buf: str) -> tuple[int, int] | None:
    """(end of line, start of next line) for the first CR, LF or CRLF terminator."""
    cr, lf = buf.find("\r"), buf.find("\n")
    if cr == -1 and lf == -1:
        return None
    if cr == -1 or (lf != -1 and lf < cr):
        return lf, lf + 1
    if cr + 1 < len(buf) and buf[cr + 1] == "\n":
        return cr, cr + 2
    return cr, cr + 1
