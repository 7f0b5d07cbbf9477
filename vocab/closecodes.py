"""The close-code catalogue (docs/protocol.md, "Close codes") and ONE reconnect policy.

The server closes with these codes; every client decides with `decide()`. The JS client carries the
same table and is tested against the docs table, as this module is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CloseCode:
    code: int
    name: str
    reconnect: bool
    resume: bool  # False where the docs have a dash: no reconnect, so nothing to resume
    action: str


NORMAL = CloseCode(1000, "normal", False, False, "closed on purpose")
FRAME_TOO_LARGE = CloseCode(1009, "frame_too_large", True, True, "fix the sender, reconnect")
UNAUTHORIZED = CloseCode(4001, "unauthorized", False, False, "get a valid token first")
TOKEN_EXPIRED = CloseCode(4002, "token_expired", True, True, "refresh the token, then reconnect")
FORBIDDEN_ORIGIN = CloseCode(4003, "forbidden_origin", False, False, "page origin not allowed")
PROTOCOL_ERROR = CloseCode(
    4004, "protocol_error", True, True, "repeated malformed frames; reconnect with backoff"
)
RATE_LIMITED = CloseCode(4008, "rate_limited", True, True, "back off, reconnect")
TOO_MANY_CONNECTIONS = CloseCode(
    4009, "too_many_connections", True, True, "back off (another device/tab must close first)"
)
SLOW_CONSUMER = CloseCode(
    4010, "slow_consumer", True, True, "reconnect at once and resume: nothing is lost"
)
SERVER_SHUTDOWN = CloseCode(
    4011, "server_shutdown", True, True,
    "replica going away: reconnect (any replica) at once and resume",
)
HEARTBEAT_TIMEOUT = CloseCode(
    4012, "heartbeat_timeout", True, True, "no frame within the heartbeat timeout"
)
HANDSHAKE_TIMEOUT = CloseCode(4013, "handshake_timeout", True, True, "handshake too slow")
INTERNAL_ERROR = CloseCode(4500, "internal_error", True, True, "back off, reconnect")
UNAVAILABLE = CloseCode(4503, "unavailable", True, True, "session store unreachable, back off")

CLOSE_CODES: dict[int, CloseCode] = {
    c.code: c
    for c in (
        NORMAL, FRAME_TOO_LARGE, UNAUTHORIZED, TOKEN_EXPIRED, FORBIDDEN_ORIGIN, PROTOCOL_ERROR,
        RATE_LIMITED, TOO_MANY_CONNECTIONS, SLOW_CONSUMER, SERVER_SHUTDOWN, HEARTBEAT_TIMEOUT,
        HANDSHAKE_TIMEOUT, INTERNAL_ERROR, UNAVAILABLE,
    )
}

BY_NAME: dict[str, CloseCode] = {c.name: c for c in CLOSE_CODES.values()}
GOING_AWAY = 1001  # a plain server restart (not our catalogue): treat like server_shutdown

# Reconnect at once (no backoff), once in a row: the table says "at once" for these two only.
IMMEDIATE = frozenset({SLOW_CONSUMER.code, SERVER_SHUTDOWN.code})
# This replica is going away: the next attempt goes to the next URL.
ROTATE = frozenset({SERVER_SHUTDOWN.code, GOING_AWAY})


@dataclass(frozen=True)
class Decision:
    reconnect: bool
    immediate: bool = False  # skip the backoff delay (only once in a row)
    rotate: bool = False  # use the next URL
    refresh_token: bool = False  # ask for a new token first


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
        refresh_token=code == TOKEN_EXPIRED.code,
    )
