"""The run command: start the local system from dapr.yaml, print where to connect, stop on Ctrl-C.

Ports are the fixed ones in dapr.yaml (Redis 6390, placement 50005); the test suite never uses
them, so a demo and a test run can share the machine.
"""

import os
import signal
import sys
import threading
import time

from demo.links import allowed_origins, demo_links
from devtools.topology import ROOT, Topology
from gateway.auth import mint_hs256

DEMO_USERS = ("alice", "bob", "carol")


def main() -> int:
    secret = os.environ.get("TASKSYNC_JWT_SECRET", "dev-secret-change-me-0123456789abcdef")
    env = {"TASKSYNC_JWT_SECRET": secret, "LOG_LEVEL": "WARNING"}
    topo = Topology(ROOT / ".run", fixed_ports=True, extra_env=env)
    gw_urls = [
        f"http://127.0.0.1:{a.app_port}" for a in topo.apps.values() if a.app_id == "gateway"
    ]
    # A board served by one gateway fails over to the other: both origins must be allowed.
    topo.extra_env["TASKSYNC_ALLOWED_ORIGINS"] = allowed_origins(gw_urls)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    try:
        print(
            "[run] starting Redis, placement, sessions host, 2 gateways, demo producer ...",
            flush=True,
        )
        topo.start()
        ready_s = time.monotonic() - t0
        gws = [a for a in topo.apps.values() if a.app_id == "gateway"]
        producer = topo.apps.get("producer")
        print(f"\n[run] ready in {ready_s:.1f}s (first actor call answered). Logs: {topo.log_dir}")
        for a in gws:
            print(
                f"  gateway {a.env.get('TASKSYNC_REPLICA_ID')}: ws://127.0.0.1:{a.app_port}/ws"
                f"  sse http://127.0.0.1:{a.app_port}/sse  demo http://127.0.0.1:{a.app_port}/"
            )
        if producer:
            print(f"  demo task API: http://127.0.0.1:{producer.app_port}/tasks")
        print("\n  demo tokens (HS256, 24h; secret from TASKSYNC_JWT_SECRET):")
        for user in DEMO_USERS:
            print(f"    {user}: {mint_hs256(secret, user)}")
        if producer:
            api = f"http://127.0.0.1:{producer.app_port}"
            print("\n  live task board, one tab per user (share a task with bob or carol):")
            for user, url in demo_links(gw_urls, api, secret, DEMO_USERS).items():
                print(f"    {user}: {url}")
        print("\n  Ctrl-C stops everything.", flush=True)
        while not stop.is_set():
            for a in topo.apps.values():
                for p in (a.app, a.sidecar):
                    if p is not None and not p.alive:
                        print(f"[run] {p.name} exited; see {p.log_path}", file=sys.stderr)
                        stop.set()
            stop.wait(1.0)
        return 0
    except Exception as e:
        print(f"[run] failed: {e}", file=sys.stderr)
        return 1
    finally:
        print("[run] stopping ...", flush=True)
        topo.stop()
        print("[run] stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
