"""What to do when a connection ends, following the close-code catalogue of docs/protocol.md.

The catalogue and the reconnect policy are the shared vocabulary's (vocab/closecodes.py).
"""

from __future__ import annotations

from vocab.closecodes import BY_NAME, CLOSE_CODES, GOING_AWAY, Decision, decide

__all__ = ["BY_NAME", "CLOSE_CODES", "GOING_AWAY", "Decision", "decide"]

NORMAL = 1000
TOKEN_EXPIRED = 4002
SLOW_CONSUMER = 4010
SERVER_SHUTDOWN = 4011
HEARTBEAT_TIMEOUT = 4012
HANDSHAKE_TIMEOUT = 4013
# Names that are also ordinary (non-closing) `error` codes: on SSE they mean a close only when
# the stream actually ends right after them.
AMBIGUOUS_SSE_NAMES = frozenset({"frame_too_large", "rate_limited", "unavailable"})


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
