"""One real topology per test session: Redis, placement, sessions host, two gateway replicas
(gw-a, gw-b, one app-id) and the demo producer, each app with its own daprd, on free ports."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.topology import Topology
from tests.integration.harness import SECRET

TEST_ENV = {
    "TASKSYNC_JWT_SECRET": SECRET,
    "TASKSYNC_RETENTION_EVENTS": "200",
    "TASKSYNC_HEARTBEAT_SECONDS": "2",
    "TASKSYNC_HEARTBEAT_TIMEOUT_SECONDS": "6",
    "TASKSYNC_LEASE_SECONDS": "9",
    "TASKSYNC_ACK_INTERVAL_SECONDS": "0.2",
    "TASKSYNC_SEND_QUEUE_MAX": "64",
    "TASKSYNC_SEND_TIMEOUT_SECONDS": "3",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="session")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    t = Topology(Path(tmp_path_factory.mktemp("topology")), fixed_ports=False, extra_env=TEST_ENV)
    try:
        t.start()
        yield t
    except BaseException:
        for a in t.apps.values():
            for p in (a.app, a.sidecar):
                if p is not None:
                    print(f"--- {p.name} ---\n{p.tail(60)}", file=sys.stderr)
        raise
    finally:
        t.stop()
