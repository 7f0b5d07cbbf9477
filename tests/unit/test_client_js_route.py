"""The gateway serves the browser client's ES modules (clients/js/src) at /client/<module>.js as
text/javascript, and nothing else: only a file name listed in that folder is ever read."""

import re
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import AuthConfig

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "clients" / "js" / "src"
MODULES = sorted(p.name for p in SRC.glob("*.js"))
IMPORT_FROM = re.compile(r"""^\s*(?:import|export)\b[^;]*?\bfrom\s+["']([^"']+)["']""", re.M)


async def get(path: str) -> httpx.Response:
    app = create_app(auth=AuthConfig(hs_secret="unit-test-secret-0123456789abcdef"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
        return await c.get(path)


def test_the_folder_holds_the_client() -> None:
    assert "index.js" in MODULES and "client.js" in MODULES and "codes.js" in MODULES


@pytest.mark.parametrize("name", MODULES)
async def test_every_module_is_served_as_javascript(name: str) -> None:
    r = await get(f"/client/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "text/javascript"
    assert r.content == (SRC / name).read_bytes()


@pytest.mark.parametrize("name", MODULES)
def test_relative_imports_stay_within_the_served_folder(name: str) -> None:
    # The browser resolves "./x.js" against /client/: every one of them must be served too.
    text = (SRC / name).read_text()
    specs = IMPORT_FROM.findall(text)
    if name == "index.js":
        assert specs, "the pattern finds index.js's re-exports"
    for spec in specs:
        assert spec.startswith("./") and "/" not in spec[2:], (name, spec)
        assert spec[2:] in MODULES, (name, spec)


def test_the_demo_page_imports_the_served_entry_point() -> None:
    app_js = (ROOT / "gateway" / "static" / "app.js").read_text()
    assert re.search(r'^import \{ TaskSyncClient \} from "/client/index\.js";$', app_js, re.M)


@pytest.mark.parametrize(
    "path",
    [
        "/client/tasksync.js",  # the old single file is gone
        "/client/nope.js",
        "/client/README.md",
        "/client/package.json",
        "/client/INDEX.JS",
        "/client/index.js.map",
        "/client/index",
        "/client/..%2Fpackage.json",
        "/client/..%2F..%2F..%2Fgateway%2Fapp.py",
        "/client/%2e%2e/README.md",
        "/client/%00index.js",
        "/client/index.js%00",
        "/client/src/index.js",
        "/client/test/fakes.js",
    ],
)
async def test_anything_else_is_404(path: str) -> None:
    r = await get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert b"import " not in r.content and b"def create_app" not in r.content
