"""The gateway's typed caller of the UserSession and ReplicaRegistry actors (through daprd).

Requests and answers are the classes of actors/contract.py, shared with the actor shell. A
malformed answer is a transient failure (ActorUnavailable), never a half-parsed dict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from actors import contract as c
from actors.session_core import Filters, IncomingEvent, Liveness
from gateway.actor_client import ActorUnavailable, DaprClient
from vocab.json_types import WireMap
from vocab.wire_checks import _float, _list, _map, _str

USER_SESSION = "UserSession"
REGISTRY = "ReplicaRegistry"
A = TypeVar("A")


class SessionsPort(Protocol):
    """What the gateway needs from the session actors. Implemented through daprd (Sessions)
    and in memory (gateway/sessions_memory.py); one contract suite runs against both."""

    replica: str

    async def deliver(self, user: str, events: list[IncomingEvent],
                      live: Liveness | None) -> c.DeliverAnswer: ...
    async def attach(self, user: str, conn: str, device: str, since: str | None,
                     live: Liveness | None) -> c.AttachAnswer: ...
    async def read(self, user: str, epoch: str, after: int, limit: int = 500
                   ) -> c.ReadAnswer: ...
    async def detach(self, user: str, conns: list[str]) -> None: ...
    async def ack(self, user: str, device: str, seq: int) -> c.AckAnswer: ...
    async def set_filters(self, user: str, filters: Filters) -> Filters: ...
    async def heartbeat(self, lease_s: float, url: str) -> RegistryView: ...
    async def registry_snapshot(self) -> RegistryView: ...
    async def leave_registry(self) -> None: ...


class Sessions:
    def __init__(self, dapr: DaprClient, replica: str) -> None:
        self.dapr = dapr
        self.replica = replica

    async def _call(
        self, user: str, method: str, req: WireMap, parse: Callable[[WireMap], A]
    ) -> A:
        raw = await self.dapr.call(USER_SESSION, user, method, req)
        try:
            return parse(raw)
        except (ValueError, TypeError, KeyError) as e:
            raise ActorUnavailable(f"{USER_SESSION}/{user}.{method}: bad answer: {e}") from e

    async def deliver(
        self, user: str, events: list[IncomingEvent], live: Liveness | None
    ) -> c.DeliverAnswer:
        req = c.DeliverRequest(events, live).to_wire()
        return await self._call(user, "deliver", req, c.DeliverAnswer.from_wire)

    async def attach(
        self, user: str, conn: str, device: str, since: str | None, live: Liveness | None
    ) -> c.AttachAnswer:
        req = c.AttachRequest(conn, self.replica, device, since, live).to_wire()
        return await self._call(user, "attach", req, c.AttachAnswer.from_wire)

    async def read(self, user: str, epoch: str, after: int, limit: int = 500) -> c.ReadAnswer:
        req = c.ReadRequest(epoch, after, limit).to_wire()
        return await self._call(user, "read", req, c.ReadAnswer.from_wire)

    async def detach(self, user: str, conns: list[str]) -> None:
        await self.dapr.call(USER_SESSION, user, "detach", c.DetachRequest(conns).to_wire())

    async def ack(self, user: str, device: str, seq: int) -> c.AckAnswer:
        req = c.AckRequest(device, seq).to_wire()
        return await self._call(user, "ack", req, c.AckAnswer.from_wire)

    async def set_filters(self, user: str, filters: Filters) -> Filters:
        req = c.FiltersMessage(filters).to_wire()
        answer = await self._call(user, "set_filters", req, c.FiltersMessage.from_wire)
        return answer.filters

    async def heartbeat(self, lease_s: float, url: str) -> RegistryView:
        """Renew this replica's lease (and advertise where peers reach it)."""
        res = await self.dapr.call(REGISTRY, "default", "heartbeat",
                                   {"replica": self.replica, "lease": lease_s, "url": url})
        return _view(res)

    async def registry_snapshot(self) -> RegistryView:
        return _view(await self.dapr.call(REGISTRY, "default", "snapshot", {}))

    async def leave_registry(self) -> None:
        await self.dapr.call(REGISTRY, "default", "leave", {"replica": self.replica})


@dataclass(frozen=True)
class RegistryView:
    live: Liveness
    urls: dict[str, str]  # live replica -> its internal base URL


def _view(res: WireMap) -> RegistryView:
    try:
        live = Liveness(frozenset(_str(r, "replica") for r in _list(res["live"], "live")),
                        _float(res["as_of"], "as_of"))
        urls = {_str(r, "replica"): _str(u, "url") for r, u in _map(res["urls"], "urls").items()}
        return RegistryView(live, urls)
    except (KeyError, ValueError) as e:
        raise ActorUnavailable(f"registry: bad answer: {e}") from e
