"""This replica's membership of the cluster: its registry lease, and the liveness snapshot and
peer addresses it learns from it. O(1) calls per replica on a timer (the lease), whatever the
number of connections; nothing per connection.
"""

from __future__ import annotations

import logging
import time

from actors.session_core import Liveness
from gateway.actor_client import ActorUnavailable
from gateway.config import Settings
from gateway.sessions import RegistryView, SessionsPort

log = logging.getLogger("gateway.membership")


class Membership:
    def __init__(self, settings: Settings, sessions: SessionsPort) -> None:
        self.settings = settings
        self.sessions = sessions
        # The last registry snapshot: attach and deliver pass it to the actor, which drops the
        # connections of dead replicas (judged by the same rule everywhere: Liveness.holds).
        self.liveness: Liveness | None = None
        self.peer_urls: dict[str, str] = {}  # live replica -> where forwards go
        self._looked_up = 0.0  # monotonic time of the last on-demand registry lookup
        self._last_beat: float | None = None  # monotonic time of the last renewed lease

    def learn(self, view: RegistryView) -> None:
        self.liveness, self.peer_urls = view.live, view.urls

    async def heartbeat(self) -> bool:
        """Renew the lease. True when it had lapsed (no renewal for a whole lease): actors may
        then have dropped this replica's connections as dead."""
        try:
            self.learn(await self.sessions.heartbeat(self.settings.lease_s,
                                                      self.settings.advertise_url))
        except ActorUnavailable as e:
            log.warning("registry heartbeat failed (retried in %.1f s): %s",
                        self.settings.lease_s / 3, e)
            return False
        now = time.monotonic()
        lapsed = self._last_beat is not None and now - self._last_beat >= self.settings.lease_s
        self._last_beat = now
        return lapsed

    def replicas(self) -> list[str]:
        """The live replicas of the last snapshot (broadcasts are forwarded to each)."""
        if self.liveness is not None:
            return sorted(self.liveness.replicas)
        return sorted(self.peer_urls)

    async def peer_url(self, replica: str) -> str | None:
        """Where to forward to `replica`. A replica newer than our snapshot is looked up at once
        (at most once a second), so its first events don't wait for the next heartbeat."""
        url = self.peer_urls.get(replica)
        now = time.monotonic()
        if url is None and now - self._looked_up >= 1.0:
            self._looked_up = now
            try:
                self.learn(await self.sessions.registry_snapshot())
            except ActorUnavailable as e:
                log.warning("registry lookup for %s failed: %s", replica, e)
            url = self.peer_urls.get(replica)
        return url

    async def leave(self) -> None:
        try:
            await self.sessions.leave_registry()
        except ActorUnavailable as e:
            log.info("registry leave failed (the lease runs out instead): %s", e)
