"""One real topology per test session: Redis, placement, two sessions host replicas (s1, s2, one
app-id), two gateway replicas (gw-a, gw-b, one app-id) and the demo producer, each app with its
own daprd, on free ports. No supervision here: fault tests kill and restart by name."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.topology import Topology
from tests.integration.harness import ADMIN_TOKEN, SECRET

TEST_ENV = {
    "TASKSYNC_JWT_SECRET": SECRET,
    "TASKSYNC_RETENTION_EVENTS": "200",
    "TASKSYNC_HEARTBEAT_SECONDS": "2",
    "TASKSYNC_HEARTBEAT_TIMEOUT_SECONDS": "6",
    "TASKSYNC_LEASE_SECONDS": "9",
    "TASKSYNC_ACK_INTERVAL_SECONDS": "0.2",
    "TASKSYNC_SEND_QUEUE_MAX": "64",
    "TASKSYNC_SEND_TIMEOUT_SECONDS": "3",
    # Security limits small enough to hit in tests (test_security.py); other tests use at most
    # 4 connections per user and send no Origin header.
    "TASKSYNC_MAX_CONNECTIONS_PER_USER": "4",
    "TASKSYNC_HEADER_TIMEOUT_SECONDS": "3",
    "TASKSYNC_ALLOWED_ORIGINS": "https://app.example",
    "LOG_LEVEL": "INFO",
    # The operator API (tests/integration/test_admin.py); refused entirely when unset.
    "TASKSYNC_ADMIN_TOKEN": ADMIN_TOKEN,
}


def run_topology(t: Topology, names: list[str] | None = None) -> Iterator[Topology]:
    """Start (all apps, or the named ones), hand over, and always stop; on failure print the
    tail of every process log. Shared by the integration and browser suites."""
    try:
        t.start(names)
        yield t
    except BaseException:
        for a in t.apps.values():
            for p in (a.app, a.sidecar):
                if p is not None:
                    print(f"--- {p.name} ---\n{p.tail(60)}", file=sys.stderr)
        raise
    finally:
        t.stop()


@pytest.fixture(scope="session")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    run_dir = Path(tmp_path_factory.mktemp("topology"))
    # With Jaeger (tests/integration/test_tracing.py); daprd samples only publishes that carry a
    # sampled traceparent (and 1 in 1,000 other calls), so the other tests pay next to nothing.
    yield from run_topology(
        Topology(run_dir, fixed_ports=False, extra_env=dict(TEST_ENV), tracing=True)
    )


@pytest.fixture(scope="session")
def fault_topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """A second topology for the destructive tests (test_faults.py, test_state_loss.py): Redis
    with AOF on, so a restarted Redis keeps its data unless a test turns AOF off on purpose.
    The shared `topo` never sees a wipe or a kill it did not ask for."""
    run_dir = Path(tmp_path_factory.mktemp("fault-topology"))
    yield from run_topology(
        Topology(run_dir, fixed_ports=False, extra_env=dict(TEST_ENV), redis_aof=True)
    )
