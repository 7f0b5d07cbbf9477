"""What a client frame does, whatever transport carried it. The connection only ever touches
its own user's actor: the user id comes from the verified token held by the Connection."""

import logging
import time
from collections.abc import Callable

from actors.session_core import Filters
from gateway import protocol
from gateway.actor_client import ActorUnavailable
from gateway.auth import AuthConfig, AuthError, verify
from gateway.connection import Connection
from gateway.sessions import SessionsPort

log = logging.getLogger("gateway.frames")


def filters_from_spec(spec: protocol.FilterSpec) -> Filters:
    def fs(v: tuple[str, ...] | None) -> frozenset[str] | None:
        return frozenset(v) if v is not None else None

    return Filters(types=fs(spec.types), task_ids=fs(spec.task_ids), list_ids=fs(spec.list_ids))


class FrameHandler:
    def __init__(
        self, sessions: SessionsPort, auth: AuthConfig,
        on_user_filters: Callable[[str, Filters | None], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.auth = auth
        # The user's connections here apply new user filters to broadcasts at once.
        self.on_user_filters = on_user_filters

    async def handle(self, conn: Connection, frame: protocol.ClientFrame) -> None:
        conn.last_seen = time.monotonic()
        if isinstance(frame, protocol.Ack):
            conn.note_ack(frame.seq)
        elif isinstance(frame, protocol.Ping):
            conn.push(protocol.pong(frame.ts if frame.ts is not None else time.time()))
        elif isinstance(frame, protocol.Pong):
            pass  # liveness already noted
        elif isinstance(frame, protocol.Subscribe):
            await self._filters(conn, frame.scope, filters_from_spec(frame.filters))
        elif isinstance(frame, protocol.Unsubscribe):
            await self._filters(conn, frame.scope, None)
        elif isinstance(frame, protocol.Refresh):
            self._refresh(conn, frame.token)

    async def _filters(self, conn: Connection, scope: str, filters: Filters | None) -> None:
        if scope == "connection":
            conn.conn_filter = None if filters is None or filters.is_empty() else filters
            wire = conn.conn_filter.to_wire() if conn.conn_filter is not None else None
            conn.push(protocol.subscribed(wire, "connection"))
            return
        try:
            stored = await self.sessions.set_filters(conn.user, filters or Filters())
        except ActorUnavailable as e:
            log.warning("set_filters for %s failed: %s", conn.user, e)
            conn.push(protocol.error("unavailable", "could not store filters; retry later"))
            return
        if self.on_user_filters is not None:
            self.on_user_filters(conn.user, None if stored.is_empty() else stored)
        conn.push(protocol.subscribed(stored.to_wire(), "user"))

    def _refresh(self, conn: Connection, token: str) -> None:
        try:
            ident = verify(self.auth, token)
        except AuthError as e:
            conn.push(protocol.error("bad_token", e.message))
            return
        if ident.user != conn.user:
            conn.push(protocol.error("bad_token", "token is for another user"))
            return
        conn.expires_at = ident.expires_at
