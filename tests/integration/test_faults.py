"""Permanent fault suite, small scale (the full one: `python -m bench.faults`, docs/reliability.md).

Each test: 10 users x 2 devices connected over WebSocket (a device resumes with its `epoch:seq`
position on any gateway when its connection drops), events flowing at 15/s through the
producer's daprd, one fault, then a bounded drain. Per device: every event published for its
user delivered, no duplicate, no gap, no resync_required. Runs on the `fault_topo` topology
(Redis with AOF), so the shared `topo` never sees these kills.
"""

import pytest

from bench.faults import Result, Scenario, kill_parts, restart_redis, run_scenario
from devtools.topology import Topology

# A crashed gateway app restarted at once (as the run command's supervisor and Kubernetes do):
# the events its daprd held arrive when the app is back (~1.5 s) or when the other replica
# re-claims them (processingTimeout 2 s + a 0.5 s tick). Measured max 2.2-4.5 s, p99 2.0-4.4 s
# (docs/operations.md, Failover); the bound leaves room for this noisy 2-core machine and still
# fails the old 10 s + 2 s behaviour. An app that stays down is slower (up to 16 s, same doc).
FAILOVER_MAX_DELAY_S = 8.0


def check(r: Result) -> None:
    print(f"{r.name}: published {r.published}, delivered {r.delivered}/{r.expected}, "
          f"dups {r.duplicates}, gaps {r.gaps}, lost {r.lost}, resync {r.resync_required}, "
          f"fault p99/max {r.fault_p99_s}/{r.fault_max_s} s, recover {r.recover_s} s, "
          f"reconnects {r.reconnects} {r.close_codes} {r.extra}")
    assert r.drained, "not every device got every event within the drain bound"
    assert r.published > 0
    assert r.delivered == r.expected and r.min_device_ratio == 1.0, r
    assert (r.duplicates, r.gaps, r.lost) == (0, 0, 0), r
    assert r.resync_required == 0 and r.silent_epoch_changes == 0, r


def scenario(name: str, fault: object, **kw: object) -> Scenario:
    base: dict[str, object] = dict(users=10, devices=2, rate=15.0, before_s=3.0, after_s=10.0,
                                   drain_s=60.0)
    base.update(kw)
    return Scenario(name, name, fault, **base)  # type: ignore[arg-type]


async def test_crashed_gateway_app_in_flight_events_fail_over_fast(fault_topo: Topology) -> None:
    """Users all on gw-a; gw-b's app is SIGKILLed (its daprd stays up) and restarted 0.5 s
    later: the events gw-b's daprd had taken reach the users once, within the bound."""
    r = await run_scenario(fault_topo, scenario(
        "gw-app-crash", kill_parts("gateway-gw-b", ["app"], 0.5), rate=20.0, prefer=0,
        after_s=12.0))
    check(r)
    assert r.reconnects == 0, r.close_codes  # nobody was connected to the victim
    assert r.fault_max_s <= FAILOVER_MAX_DELAY_S, r


@pytest.mark.parametrize("parts", [["app", "daprd"]], ids=["app+daprd"])
async def test_killed_gateway_replica(fault_topo: Topology, parts: list[str]) -> None:
    """Half the devices are on the victim: they reconnect to the other gateway and resume."""
    r = await run_scenario(fault_topo, scenario(
        "gw-kill", kill_parts("gateway-gw-b", parts, 3.0)))
    check(r)
    assert r.reconnects >= 10, r.close_codes


async def test_killed_sessions_replica(fault_topo: Topology) -> None:
    """kill -9 of the sessions replica hosting more actors (app + daprd), back after 3 s
    (test_failover.py covers the same without devices reconnecting or traffic flowing)."""
    r = await run_scenario(fault_topo, scenario(
        "sessions-kill", kill_parts("sessions", ["app", "daprd"], 3.0), after_s=15.0))
    check(r)


async def test_killed_sessions_daprd_while_its_app_keeps_running(fault_topo: Topology) -> None:
    """The app keeps its actors' sessions in memory while placement moves them to the other
    replica; when the daprd returns, actors placed back here must not serve that stale memory
    (it lost 15% of the deliveries before actors/memory_generation.py)."""
    r = await run_scenario(fault_topo, scenario(
        "sessions-daprd-kill", kill_parts("sessions", ["daprd"], 3.0), after_s=15.0))
    check(r)


async def test_redis_restart_with_aof(fault_topo: Topology) -> None:
    """kill -9 of Redis (AOF everysec) and an immediate restart: publishes that fail meanwhile
    are retried by the producer with the same event id; nothing is lost or duplicated."""
    assert fault_topo.redis_aof
    r = await run_scenario(fault_topo, scenario("redis-aof-restart", restart_redis(True)))
    check(r)
