"""Pure rules of the replica registry: which gateway replicas are alive.

Liveness is kept per replica, never per connection or per user: each replica renews ONE lease
every few seconds, so an idle connection costs nothing on a timer, and a crashed replica's routes
die with its lease without any cleanup call (see session_core.Liveness for how a session actor
judges its connections by a snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.session_core import Liveness, _float, _map, _str


@dataclass
class Registry:
    leases: dict[str, float] = field(default_factory=dict)  # replica -> lease expiry

    def to_wire(self) -> dict[str, Any]:
        return {"leases": dict(self.leases)}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Registry:
        leases = _map(d.get("leases") or {}, "leases")
        return cls({_str(r, "replica"): _float(t, "lease") for r, t in leases.items()})


def snapshot(reg: Registry, now: float) -> Liveness:
    return Liveness(frozenset(r for r, t in reg.leases.items() if t > now), now)


def heartbeat(reg: Registry, replica: str, now: float, lease_s: float) -> Liveness:
    """Renew one replica's lease and forget long-dead ones; returns the live snapshot."""
    if not lease_s > 0:
        raise ValueError(f"lease must be > 0, got {lease_s!r}")
    reg.leases[replica] = now + lease_s
    # Dead replicas are kept for a while so callers can tell "dead" from "never seen".
    for r in [r for r, t in reg.leases.items() if t + 10 * lease_s <= now]:
        del reg.leases[r]
    return snapshot(reg, now)


def leave(reg: Registry, replica: str, now: float) -> Liveness:
    """A replica shutting down cleanly: its lease ends now, not when it runs out."""
    if replica in reg.leases:
        reg.leases[replica] = min(reg.leases[replica], now)
    return snapshot(reg, now)


def dead(reg: Registry, now: float) -> frozenset[str]:
    """Replicas known and past their lease (never-seen ones are not in here)."""
    return frozenset(r for r, t in reg.leases.items() if t <= now)
