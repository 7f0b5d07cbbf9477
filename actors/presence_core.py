"""Pure rules of the presence registry: which users have a live connection on which replica.

Only broadcasts need it ("every user connected at that moment"). Users are spread over a fixed
number of Presence actors (shards) so no single actor holds everyone. Entries are leases: a
crashed replica's users disappear when its leases run out, without any cleanup call.
"""

import zlib
from dataclasses import dataclass, field
from typing import Any

SHARDS = 8


def shard_of(user: str, shards: int = SHARDS) -> str:
    # crc32, not hash(): must agree across processes and restarts.
    return f"shard-{zlib.crc32(user.encode('utf-8')) % shards}"


@dataclass
class PresenceState:
    # user -> replica -> lease expiry
    users: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"users": self.users}

    @staticmethod
    def from_wire(d: dict[str, Any]) -> "PresenceState":
        return PresenceState(
            users={u: {r: float(t) for r, t in reps.items()} for u, reps in d["users"].items()}
        )


def prune(state: PresenceState, now: float) -> None:
    for user in list(state.users):
        live = {r: t for r, t in state.users[user].items() if t > now}
        if live:
            state.users[user] = live
        else:
            del state.users[user]


def join(state: PresenceState, replica: str, users: list[str], now: float, lease: float) -> None:
    for user in users:
        state.users.setdefault(user, {})[replica] = now + lease
    prune(state, now)


def leave(state: PresenceState, replica: str, users: list[str], now: float) -> None:
    for user in users:
        state.users.get(user, {}).pop(replica, None)
    prune(state, now)


def live_users(state: PresenceState, now: float) -> list[str]:
    prune(state, now)
    return sorted(state.users)
