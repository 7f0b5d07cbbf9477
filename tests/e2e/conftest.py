"""Browser tests: one real topology per session (Redis, placement, sessions host, gateways gw-a and
gw-b, demo producer; each app with its own daprd, on free ports), started exactly like the
integration suite's, plus TASKSYNC_ALLOWED_ORIGINS so a board served by one gateway may fail over
to the other. The browser is Debian's chromium driven by playwright-core from browser_driver.mjs."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.links import allowed_origins
from devtools.topology import Topology
from tests.integration.conftest import TEST_ENV, run_topology

E2E = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"


def missing_tools() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (Debian package chromium)"
    if not (E2E / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed: run scripts/setup.sh"
    return None


def gateway_urls(t: Topology) -> list[str]:
    return [f"http://127.0.0.1:{a.app_port}" for a in t.apps.values() if a.app_id == "gateway"]


def make_topology(run_dir: Path) -> Topology:
    t = Topology(run_dir, fixed_ports=False, extra_env=dict(TEST_ENV))
    # Ports are known once the Topology exists; the environment is read when processes start.
    t.extra_env["TASKSYNC_ALLOWED_ORIGINS"] = allowed_origins(gateway_urls(t))
    return t


@pytest.fixture(scope="session")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    why = missing_tools()
    if why:
        # setup.sh installs all of these: missing means a broken setup, never a skip.
        pytest.fail(why)
    yield from run_topology(make_topology(Path(tmp_path_factory.mktemp("topology"))))
