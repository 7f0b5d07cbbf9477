"""Pure rules of the presence registry: which users have a connection on which replica.

Only broadcasts need it ("every user connected at that moment"). Users are spread over a fixed
number of Presence actors (shards) so no single actor holds everyone. Entries are explicit (join
on a user's first connection on a replica, leave on its last) and carry no lease: a crashed
replica's users drop out when a liveness snapshot no longer lists the replica, so keeping
presence costs nothing on a timer.
"""

import zlib
from dataclasses import dataclass, field
from typing import TypedDict

from actors.session_core import ConnLease, Liveness
from vocab.json_types import WireMap
from vocab.wire_checks import _float, _map, _str

SHARDS = 8


def shard_of(user: str, shards: int = SHARDS) -> str:
    # crc32, not hash(): must agree across processes and restarts.
    return f"shard-{zlib.crc32(user.encode('utf-8')) % shards}"


class PresenceWire(TypedDict):
    users: dict[str, dict[str, float]]


@dataclass
class PresenceState:
    # user -> replica -> when the user joined there (judged like a connection by a snapshot)
    users: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_wire(self) -> PresenceWire:
        return {"users": self.users}

    @staticmethod
    def from_wire(d: WireMap) -> "PresenceState":
        return PresenceState(users={
            _str(u, "user"): {_str(r, "replica"): _float(t, "since")
                              for r, t in _map(reps, "replicas").items()}
            for u, reps in _map(d.get("users") or {}, "users").items()
        })


def join(state: PresenceState, replica: str, users: list[str], now: float) -> None:
    for user in users:
        state.users.setdefault(user, {})[replica] = now


def leave(state: PresenceState, replica: str, users: list[str]) -> None:
    for user in users:
        reps = state.users.get(user)
        if reps is not None:
            reps.pop(replica, None)
            if not reps:
                del state.users[user]


def prune(state: PresenceState, live: Liveness, grace_s: float) -> bool:
    """Drop entries of replicas the snapshot shows dead; True when anything changed."""
    changed = False
    for user in list(state.users):
        reps = state.users[user]
        for r in [r for r, t in reps.items() if not live.holds(ConnLease(r, "", t), grace_s)]:
            del reps[r]
            changed = True
        if not reps:
            del state.users[user]
    return changed


def users_of(state: PresenceState) -> list[str]:
    return sorted(state.users)
