"""The run command: start the local system from dapr.yaml, print where to connect, restart what
crashes (backoff, logged), stop everything on Ctrl-C.

Ports are the fixed ones in dapr.yaml (Redis 6390, placement 50005); the test suite never uses
them, so a demo and a test run can share the machine. `--free-ports --run-dir DIR` starts a
second, independent instance (the run-command test uses it).
"""

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

from demo.links import allowed_origins, demo_links
from devtools import jaeger
from devtools.topology import ROOT, Topology
from gateway.auth import mint_hs256

DEMO_USERS = ("alice", "bob", "carol")


def write_private(path: Path, text: str) -> None:
    """Mode 0600 from the first byte (the files hold the Dapr API token), replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def producer_access(topo: Topology) -> dict[str, str]:
    """What an external producer needs: the producer daprd's publish URL and its API token."""
    p = topo.apps["producer"]
    return {
        "DAPR_HTTP_ENDPOINT": f"http://127.0.0.1:{p.http_port}",
        "PUBLISH_URL": f"http://127.0.0.1:{p.http_port}/v1.0/publish/pubsub/task-updates",
        "DAPR_API_TOKEN": topo.api_token,
    }


def admin_access(topo: Topology) -> dict[str, str]:
    """What `tasksync-admin` needs: a gateway's URL and the admin token of this run."""
    gw = topo.replicas("gateway")[0]
    return {"TASKSYNC_ADMIN_URL": f"http://127.0.0.1:{gw.app_port}",
            "TASKSYNC_ADMIN_TOKEN": topo.extra_env.get("TASKSYNC_ADMIN_TOKEN", "")}


def write_run_files(topo: Topology) -> list[Path]:
    access = producer_access(topo)
    files = {
        topo.run_dir / "producer.env": "".join(f"{k}={v}\n" for k, v in access.items()),
        topo.run_dir / "admin.env": "".join(f"{k}={v}\n" for k, v in admin_access(topo).items()),
        topo.run_dir / "producer.json": json.dumps(access, indent=2) + "\n",
        topo.run_dir / "topology.json": json.dumps(topo.describe(), indent=2) + "\n",
    }
    for path, text in files.items():
        write_private(path, text)
    return list(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/run.sh")
    ap.add_argument("--run-dir", type=Path, default=ROOT / ".run", help="logs, data, run files")
    ap.add_argument("--free-ports", action="store_true", help="free ports instead of dapr.yaml's")
    args = ap.parse_args(argv)
    secret = os.environ.get("TASKSYNC_JWT_SECRET", "dev-secret-change-me-0123456789abcdef")
    env = {"TASKSYNC_JWT_SECRET": secret, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
           # Logs for a person at a terminal; the apps' default (json) is for collectors.
           "TASKSYNC_LOG_FORMAT": os.environ.get("TASKSYNC_LOG_FORMAT", "text"),
           # The operator API (tasksync-admin reads it from .run/admin.env): fresh per start.
           "TASKSYNC_ADMIN_TOKEN": os.environ.get("TASKSYNC_ADMIN_TOKEN")
           or secrets.token_urlsafe(24)}
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    # Traces to a local Jaeger when scripts/setup.sh built it (it does); else tracing is off.
    topo = Topology(
        run_dir, fixed_ports=not args.free_ports, extra_env=env, supervise=True, redis_aof=True,
        tracing=jaeger.installed(),
    )
    assert topo.supervisor is not None
    topo.supervisor.echo = True  # restarts show in the terminal too
    gw_urls = [f"http://127.0.0.1:{a.app_port}" for a in topo.replicas("gateway")]
    # A board served by one gateway fails over to the other: both origins must be allowed.
    topo.extra_env["TASKSYNC_ALLOWED_ORIGINS"] = allowed_origins(gw_urls)
    written: list[Path] = []
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        if not stop.is_set() and not written:
            stop.set()
            raise KeyboardInterrupt  # still starting: abort the start, don't finish it first
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    t0 = time.monotonic()
    try:
        n_sessions = len(topo.replicas("sessions"))
        print(
            f"[run] starting Redis (AOF), placement, {n_sessions} sessions hosts, 2 gateways, "
            "demo producer ...",
            flush=True,
        )
        topo.start()
        ready_s = time.monotonic() - t0
        written = write_run_files(topo)
        producer = topo.apps["producer"]
        print(f"\n[run] ready in {ready_s:.1f}s (first actor call answered). Logs: {topo.log_dir}")
        for a in topo.replicas("gateway"):
            print(
                f"  gateway {a.env.get('TASKSYNC_REPLICA_ID')}: ws://127.0.0.1:{a.app_port}/ws"
                f"  sse http://127.0.0.1:{a.app_port}/sse  demo http://127.0.0.1:{a.app_port}/"
            )
        print(f"  demo task API: http://127.0.0.1:{producer.app_port}/tasks")
        if topo.jaeger is not None:
            print(f"  traces (Jaeger UI/API): {topo.jaeger.query_url}/  (each demo change is one "
                  "trace: service producer, operation /v1.0/publish/pubsub/task-updates)")
        else:
            print("  traces: off (Jaeger not installed: ./scripts/install-jaeger.sh)")
        access = producer_access(topo)
        print(
            f"\n  external producer (also in {run_dir}/producer.env and producer.json, mode 0600):"
            f"\n    POST {access['PUBLISH_URL']}"
            f"\n    header dapr-api-token: {access['DAPR_API_TOKEN']}"
        )
        print("\n  demo tokens (HS256, 24h; secret from TASKSYNC_JWT_SECRET):")
        for user in DEMO_USERS:
            print(f"    {user}: {mint_hs256(secret, user)}")
        print("\n  live task board, one tab per user (share a task with bob or carol):")
        api = f"http://127.0.0.1:{producer.app_port}"
        for user, url in demo_links(gw_urls, api, secret, DEMO_USERS).items():
            print(f"    {user}: {url}")
        print(f"\n  operator CLI: .venv/bin/tasksync-admin replicas (URL and token in "
              f"{run_dir}/admin.env)")
        print(
            f"\n  Crashed processes are restarted (backoff 0.5 s to 10 s; {topo.log_dir}/"
            "supervisor.log). Ctrl-C stops everything.",
            flush=True,
        )
        stop.wait()
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        print(f"[run] failed: {e}", file=sys.stderr)
        return 1
    finally:
        stop.set()  # from here a signal only sets the flag: never interrupt the stop itself
        print("[run] stopping ...", flush=True)
        t1 = time.monotonic()
        topo.stop()
        for path in written:  # the token dies with this run
            path.unlink(missing_ok=True)
        print(f"[run] stopped in {time.monotonic() - t1:.1f}s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
