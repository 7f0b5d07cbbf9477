"""On-demand tooling for the peers: a separate venv (python-socketio, redis, uvicorn, matplotlib)
and a Centrifugo binary built from its Go module. Neither is a dependency of the project."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from devtools.procs import Proc, free_port, port_open, wait_until

CACHE = Path(os.environ.get("TASKSYNC_CACHE", Path.home() / ".cache" / "tasksync"))
VENV = CACHE / "bench-peers-venv"
CENTRIFUGO_VERSION = "6.9.1"
CENTRIFUGO_DIR = CACHE / f"centrifugo-{CENTRIFUGO_VERSION}"
PEER_PACKAGES = ["python-socketio==5.18.1", "redis==8.1.0", "uvicorn[standard]==0.54.0",
                 "matplotlib==3.11.2", "aiohttp==3.14.5"]  # aiohttp: AsyncClient, client_cost
REDIS = "/usr/bin/redis-server"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """Create the peers venv with the same interpreter as the project (3.11) if missing."""
    py = venv_python()
    stamp = VENV / ".bench-packages"
    want = "\n".join(PEER_PACKAGES)
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True, timeout=300)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True,
                   timeout=900)
    stamp.write_text(want)
    return py


def peer_site_packages() -> str:
    out = subprocess.run([str(venv_python()), "-c", "import sysconfig;"
                          "print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


EMITTER_MODULES = ("redis", "engineio", "socketio")


def import_from_peers() -> dict[str, str]:
    """Import python-socketio and redis-py from the peers venv into this (project venv) process,
    for the external emitter. The peers venv goes FIRST on sys.path only while these are
    imported (a redis-py in the project venv must not shadow the peers' one), then is appended
    last so their lazy imports still resolve. Returns the versions actually imported."""
    import importlib
    from importlib.metadata import distributions

    sp = peer_site_packages()
    sys.path.insert(0, sp)
    try:
        for m in EMITTER_MODULES:
            mod = importlib.import_module(m)
            if not str(getattr(mod, "__file__", "")).startswith(sp):
                raise RuntimeError(f"{m} imported from {mod.__file__}, not from the peers venv")
    finally:
        sys.path.remove(sp)
    if sp not in sys.path:
        sys.path.append(sp)
    wanted = {"python-socketio", "python-engineio", "redis"}
    return {d.metadata["Name"]: d.version for d in distributions(path=[sp])
            if d.metadata["Name"] in wanted}


def centrifugo_bin() -> Path:
    return CENTRIFUGO_DIR / "centrifugo"


def ensure_centrifugo() -> Path:
    """Build Centrifugo with `go install` into the cache (skipped when the binary is there)."""
    b = centrifugo_bin()
    if b.exists():
        return b
    go = shutil.which("go") or "/usr/local/go/bin/go"
    CENTRIFUGO_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(CENTRIFUGO_DIR))
    module = f"github.com/centrifugal/centrifugo/v6@v{CENTRIFUGO_VERSION}"
    r = subprocess.run([go, "install", module], env=env, capture_output=True, text=True,
                       timeout=1800, cwd="/tmp")
    if r.returncode != 0 or not b.exists():
        raise RuntimeError(f"centrifugo build failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return b


def start_redis(run_dir: Path, name: str = "redis") -> tuple[Proc, int]:
    port = free_port()
    d = run_dir / name
    d.mkdir(parents=True, exist_ok=True)
    p = Proc(name, [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                    "--save", "", "--appendonly", "no"], dict(os.environ), run_dir, run_dir).start()
    wait_until(lambda: port_open(port), 20, name)
    return p, port
