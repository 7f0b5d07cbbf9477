"""Pure rules of the replica registry: which gateway replicas are alive.

Liveness is kept per replica, never per connection or per user: each replica renews ONE lease
every few seconds, so an idle connection costs nothing on a timer, and a crashed replica's routes
die with its lease without any cleanup call (see session_core.Liveness for how a session actor
judges its connections by a snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from actors.session_core import Liveness
from vocab.json_types import WireMap
from vocab.wire_checks import _float, _map, _str


class RegistryWire(TypedDict):
    leases: dict[str, float]
    urls: dict[str, str]


@dataclass
class Registry:
    leases: dict[str, float] = field(default_factory=dict)  # replica -> lease expiry
    # replica -> where other replicas reach it for forwards (its internal base URL)
    urls: dict[str, str] = field(default_factory=dict)

    def to_wire(self) -> RegistryWire:
        return {"leases": dict(self.leases), "urls": dict(self.urls)}

    @classmethod
    def from_wire(cls, d: WireMap) -> Registry:
        leases = _map(d.get("leases") or {}, "leases")
        urls = _map(d.get("urls") or {}, "urls")
        return cls({_str(r, "replica"): _float(t, "lease") for r, t in leases.items()},
                   {_str(r, "replica"): _str(u, "url") for r, u in urls.items()})


def snapshot(reg: Registry, now: float) -> Liveness:
    return Liveness(frozenset(r for r, t in reg.leases.items() if t > now), now)


def heartbeat(reg: Registry, replica: str, now: float, lease_s: float, url: str = "") -> Liveness:
    """Renew one replica's lease (and its address) and forget long-dead ones; returns the live
    snapshot."""
    if not lease_s > 0:
        raise ValueError(f"lease must be > 0, got {lease_s!r}")
    reg.leases[replica] = now + lease_s
    if url:
        reg.urls[replica] = url
    # Dead replicas are kept for a while so callers can tell "dead" from "never seen".
    for r in [r for r, t in reg.leases.items() if t + 10 * lease_s <= now]:
        del reg.leases[r]
        reg.urls.pop(r, None)
    return snapshot(reg, now)


def live_urls(reg: Registry, now: float) -> dict[str, str]:
    return {r: u for r, u in reg.urls.items() if reg.leases.get(r, 0.0) > now}


def leave(reg: Registry, replica: str, now: float) -> Liveness:
    """A replica shutting down cleanly: its lease ends now, not when it runs out."""
    if replica in reg.leases:
        reg.leases[replica] = min(reg.leases[replica], now)
    return snapshot(reg, now)


def dead(reg: Registry, now: float) -> frozenset[str]:
    """Replicas known and past their lease (never-seen ones are not in here)."""
    return frozenset(r for r, t in reg.leases.items() if t <= now)
