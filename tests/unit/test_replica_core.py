"""The replica registry (actors/replica_core.py): one lease per replica, never per connection."""

import pytest

from actors import replica_core as rc


def test_heartbeat_renews_and_advertises() -> None:
    reg = rc.Registry()
    live = rc.heartbeat(reg, "gw-a", 100.0, 15.0, "http://a")
    rc.heartbeat(reg, "gw-b", 101.0, 15.0, "http://b")
    assert live.replicas == frozenset({"gw-a"}) and live.as_of == 100.0
    assert rc.snapshot(reg, 114.0).replicas == frozenset({"gw-a", "gw-b"})
    assert rc.live_urls(reg, 114.0) == {"gw-a": "http://a", "gw-b": "http://b"}


def test_a_lease_that_runs_out_is_dead_without_any_call() -> None:
    reg = rc.Registry()
    rc.heartbeat(reg, "gw-a", 100.0, 15.0, "http://a")
    rc.heartbeat(reg, "gw-b", 110.0, 15.0, "http://b")
    assert rc.snapshot(reg, 115.0).replicas == frozenset({"gw-b"})  # expiry <= now is dead
    assert rc.dead(reg, 115.0) == frozenset({"gw-a"})
    assert rc.live_urls(reg, 115.0) == {"gw-b": "http://b"}


def test_leave_ends_the_lease_now_and_long_dead_replicas_are_forgotten() -> None:
    reg = rc.Registry()
    rc.heartbeat(reg, "gw-a", 100.0, 15.0, "http://a")
    assert rc.leave(reg, "gw-a", 101.0).replicas == frozenset()
    rc.heartbeat(reg, "gw-b", 101.0 + 10 * 15.0, 15.0)  # any heartbeat prunes the long dead
    assert "gw-a" not in reg.leases and "gw-a" not in reg.urls


def test_wire_round_trip_and_bad_lease() -> None:
    reg = rc.Registry()
    rc.heartbeat(reg, "gw-a", 100.0, 15.0, "http://a")
    assert rc.Registry.from_wire(reg.to_wire()) == reg
    with pytest.raises(ValueError):
        rc.heartbeat(reg, "gw-a", 100.0, 0.0)
    with pytest.raises(ValueError):
        rc.Registry.from_wire({"leases": {"gw-a": "never"}})
