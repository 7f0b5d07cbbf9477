"""Typed calls to the UserSession and Presence actors (through daprd)."""

from typing import Any

from actors.presence_core import SHARDS, shard_of
from gateway.actor_client import DaprClient

USER_SESSION = "UserSession"
PRESENCE = "Presence"


class Sessions:
    def __init__(self, dapr: DaprClient, replica: str) -> None:
        self.dapr = dapr
        self.replica = replica

    async def deliver(self, user: str, event: dict[str, Any]) -> dict[str, Any]:
        return await self.dapr.call(USER_SESSION, user, "deliver", {"event": event})

    async def attach(self, user: str, conn: str, device: str, since: str | None) -> dict[str, Any]:
        return await self.dapr.call(
            USER_SESSION,
            user,
            "attach",
            {"conn": conn, "replica": self.replica, "device": device, "since": since},
        )

    async def read(self, user: str, epoch: str, after: int, limit: int = 500) -> dict[str, Any]:
        return await self.dapr.call(
            USER_SESSION, user, "read", {"epoch": epoch, "after": after, "limit": limit}
        )

    async def detach(self, user: str, conn: str) -> None:
        await self.dapr.call(USER_SESSION, user, "detach", {"conn": conn})

    async def renew(self, user: str, conns: list[str]) -> list[str]:
        res = await self.dapr.call(
            USER_SESSION, user, "renew", {"replica": self.replica, "conns": conns}
        )
        return [str(c) for c in res.get("unknown", [])]

    async def ack(self, user: str, device: str, seq: int) -> None:
        await self.dapr.call(USER_SESSION, user, "ack", {"device": device, "seq": seq})

    async def set_filters(self, user: str, filters: dict[str, Any] | None) -> dict[str, Any]:
        res = await self.dapr.call(USER_SESSION, user, "set_filters", {"filters": filters or {}})
        return dict(res["filters"])

    async def presence_join(self, users: list[str], lease: float) -> None:
        for shard, members in _by_shard(users).items():
            await self.dapr.call(
                PRESENCE,
                shard,
                "renew",
                {"replica": self.replica, "users": members, "lease": lease},
            )

    async def presence_leave(self, users: list[str]) -> None:
        for shard, members in _by_shard(users).items():
            await self.dapr.call(
                PRESENCE, shard, "leave", {"replica": self.replica, "users": members}
            )

    async def connected_users(self) -> list[str]:
        users: set[str] = set()
        for k in range(SHARDS):
            res = await self.dapr.call(PRESENCE, f"shard-{k}", "list_users", {})
            users.update(str(u) for u in res["users"])
        return sorted(users)


def _by_shard(users: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u in users:
        out.setdefault(shard_of(u), []).append(u)
    return out
