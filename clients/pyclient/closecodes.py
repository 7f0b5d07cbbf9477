"""What to do when a connection ends, following the close-code catalogue of docs/protocol.md.

The catalogue itself is imported from the server codec so the two can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.protocol import CLOSE_CODES, CloseCode

BY_NAME: dict[str, CloseCode] = {c.name: c for c in CLOSE_CODES.values()}

NORMAL = 1000
GOING_AWAY = 1001  # a plain server restart (not our catalogue): treat like server_shutdown
TOKEN_EXPIRED = 4002
SLOW_CONSUMER = 4010
SERVER_SHUTDOWN = 4011
HEARTBEAT_TIMEOUT = 4012
HANDSHAKE_TIMEOUT = 4013

# Reconnect at once (no backoff), once in a row: the table says "at once" for these two only.
IMMEDIATE = frozenset({SLOW_CONSUMER, SERVER_SHUTDOWN})
# This replica is going away: the next attempt goes to the next URL.
ROTATE = frozenset({SERVER_SHUTDOWN, GOING_AWAY})
# Names that are also ordinary (non-closing) `error` codes: on SSE they mean a close only when
# the stream actually ends right after them.
AMBIGUOUS_SSE_NAMES = frozenset({"frame_too_large", "rate_limited", "unavailable"})


@dataclass(frozen=True)
class Decision:
    reconnect: bool
    immediate: bool = False  # skip the backoff delay (only once in a row)
    rotate: bool = False  # use the next URL
    refresh_token: bool = False  # ask get_token for a new token first


def decide(code: int | None, welcomed: bool, local: bool = False) -> Decision:
    """code None: the transport failed without a close code (refused, reset, HTTP error, stream
    ended). A connection that never reached welcome may be a dead replica: try the next URL; so
    may one that accepted but never welcomed us (``local``: the code is our own timeout)."""
    entry = CLOSE_CODES.get(code) if code is not None else None
    if entry is not None and not entry.reconnect:
        return Decision(reconnect=False)
    return Decision(
        reconnect=True,
        immediate=code in IMMEDIATE,
        rotate=code in ROTATE or (not welcomed and (entry is None or local)),
        refresh_token=code == TOKEN_EXPIRED,
    )


def is_ws_connect_failure(code: int | None, welcomed: bool, opened: bool, local: bool) -> bool:
    """Counts towards the SSE fallback: the WebSocket never reached welcome for a reason that
    points at the network path (handshake refused, dropped, or our own welcome timeout), not a
    deliberate catalogue close by the server (e.g. 4503 before welcome is the server talking)."""
    if welcomed:
        return False
    if not opened:
        return True
    if local:
        return code == HANDSHAKE_TIMEOUT
    return code is None or code not in CLOSE_CODES


def code_for_name(name: str) -> int | None:
    """The close code an SSE `error` frame's `code` stands for (None: not a close name)."""
    entry = BY_NAME.get(name)
    return entry.code if entry is not None and entry.code != NORMAL else None


def name_for_code(code: int | None) -> str:
    entry = CLOSE_CODES.get(code) if code is not None else None
    return entry.name if entry is not None else ("transport_error" if code is None else str(code))
