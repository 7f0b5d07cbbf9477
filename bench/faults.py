"""Fault suite: real daprd, placement and Redis on loopback; events flowing while a fault hits.

    .venv/bin/python -m bench.faults           # full plan (~25 min), writes docs/reliability.md
    .venv/bin/python -m bench.faults --short    # about 5 minutes, same rows, smaller numbers
    .venv/bin/python -m bench.faults --only gw-app-kill,redis-aof --no-doc

Every scenario: users x devices connected over WebSocket (devices resume with their `epoch:seq`
position on any gateway when a connection drops, like the JS/Python clients), a producer
publishing at a fixed rate through the producer's daprd, one fault, then a drain with a bounded
wait. Per device it checks what arrived against what was published for its user: delivered,
duplicates (an event id or a seq seen twice), gaps (a seq jump inside one epoch), lost (published
but never delivered, on a device that was not told to resync), resync_required, and the delay
(receive - publish, one monotonic clock) of every event.

The same engine (Load, Device, run_scenario) runs the small-scale fault tests in
tests/integration/test_faults.py. Here: the scenarios and the run; the clients and the load in
bench/fault_clients.py, the faults in bench/fault_kinds.py, the accounting in
bench/fault_results.py, the JSON and the docs/reliability.md table in bench/fault_report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fault_clients import ENV, Load
from bench.fault_kinds import (
    Fault,
    in_thread,
    kill_parts,
    restart_placement,
    restart_redis,
    sigstop,
    storm,
)
from bench.fault_report import machine, save, write_doc
from bench.fault_results import Result, evaluate
from devtools.procs import wait_until
from devtools.topology import ROOT, Topology


# -- scenarios ----------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    fault_label: str
    fault: Fault | None
    users: int = 10
    devices: int = 2
    rate: float = 15.0
    before_s: float = 5.0
    after_s: float = 15.0
    drain_s: float = 60.0
    prefer: int | None = None
    churn_s: float = 0.0  # soak: mean seconds between drops of one device
    notes: str = ""


async def run_scenario(topo: Topology, sc: Scenario) -> Result:
    load = Load(topo, sc.users, sc.devices, sc.rate, prefer=sc.prefer)
    fault_at: float | None = None
    extra: dict[str, Any] = {}
    mem0 = memory(topo)
    try:
        await load.connect(within=max(60, sc.users * sc.devices / 10))
        load.start_producer()
        if sc.churn_s:
            extra.update(await churn(load, sc.before_s + sc.after_s, sc.churn_s))
        else:
            await asyncio.sleep(sc.before_s)  # traffic before the fault (not a readiness wait)
            if sc.fault is not None:
                fault_at = time.monotonic()
                extra.update(await sc.fault(topo, load))
            rest = sc.after_s - (time.monotonic() - (fault_at or time.monotonic()))
            if rest > 0:
                await asyncio.sleep(rest)
        drained = await load.stop_and_drain(sc.drain_s)
        r = evaluate(load, sc.name, sc.fault_label, fault_at, drained)
    finally:
        await load.close()
    r.notes = sc.notes
    if sc.churn_s:
        extra["memory_mb_start"] = mem0
        extra["memory_mb_end"] = memory(topo)
        extra["state"] = state_size(topo, load.users)
    r.extra = extra
    return r


async def churn(load: Load, duration: float, mean_s: float) -> dict[str, Any]:
    """Soak: every `mean_s / len(devices)` seconds one random device drops its connection."""
    import random

    rnd = random.Random(7)
    drops = 0
    t_end = time.monotonic() + duration
    step = mean_s / max(1, len(load.devices))
    while time.monotonic() < t_end:
        await asyncio.sleep(step)
        rnd.choice(load.devices).drop()
        drops += 1
    return {"drops": drops}


def memory(topo: Topology) -> dict[str, float]:
    from bench.procstat import sample

    procs: dict[str, int] = {}
    for p in topo.procs():
        if p.alive and p.pid is not None:
            procs[p.name] = p.pid
    return {n: round(rss / 1e6, 1) for n, (_, rss) in sample(procs).items()}


def state_size(topo: Topology, users: list[str]) -> dict[str, Any]:
    """Actor state per user in Redis: keys and bytes (MEMORY USAGE), max over the users."""
    def cli(*args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(topo.redis_port), *args], check=True,
                              capture_output=True, text=True, timeout=20).stdout

    worst_keys, worst_bytes = 0, 0
    for u in users:
        keys = cli("--scan", "--pattern", f"sessions||UserSession||{u}||*").split()
        size = sum(int(cli("MEMORY", "USAGE", k).strip() or 0) for k in keys)
        worst_keys, worst_bytes = max(worst_keys, len(keys)), max(worst_bytes, size)
    return {"max_keys_per_user": worst_keys, "max_bytes_per_user": worst_bytes}


def plan(short: bool) -> list[Scenario]:
    k = 0.5 if short else 1.0
    gw, after, down = "gateway-gw-b", 15 * k + 5, 8.0 if short else 10.0
    return [
        Scenario("gw-app-kill", "kill -9 gateway app (daprd stays), back after "
                 f"{down:.0f} s", kill_parts(gw, ["app"], down), rate=20, prefer=0,
                 after_s=after, notes="users on the other gateway; in-flight events fail over"),
        Scenario("gw-app-crash", "kill -9 gateway app (daprd stays), restarted after 0.5 s as "
                 "the run command's supervisor does", kill_parts(gw, ["app"], 0.5), rate=20,
                 prefer=0, after_s=after, notes="users on the other gateway"),
        Scenario("gw-daprd-kill", f"kill -9 gateway daprd (app stays), back after {down:.0f} s",
                 kill_parts(gw, ["daprd"], down), after_s=after),
        Scenario("gw-kill", f"kill -9 gateway app + daprd, back after {down:.0f} s",
                 kill_parts(gw, ["app", "daprd"], down), after_s=after),
        Scenario("sessions-app-kill", "kill -9 busiest sessions app (daprd stays), back after "
                 f"{down:.0f} s", kill_parts("sessions", ["app"], down), after_s=after + 10),
        Scenario("sessions-daprd-kill", "kill -9 busiest sessions daprd (app stays), back after "
                 f"{down:.0f} s", kill_parts("sessions", ["daprd"], down), after_s=after + 10),
        Scenario("sessions-kill", f"kill -9 busiest sessions replica (app + daprd), back after "
                 f"{down:.0f} s", kill_parts("sessions", ["app", "daprd"], down),
                 after_s=after + 10),
        Scenario("placement-restart", "kill -9 placement, restarted at once",
                 restart_placement(), after_s=after),
        Scenario("redis-aof-restart", "kill -9 Redis (AOF everysec), restarted at once",
                 restart_redis(True), after_s=after),
        Scenario("gw-sigstop", f"SIGSTOP gateway app {20 if short else 60} s, then SIGCONT",
                 sigstop(gw, 20 if short else 60), after_s=(20 if short else 60) + 10),
        Scenario("reconnect-storm", "1,000 clients drop and reconnect at once", storm(),
                 users=500, devices=2, rate=20, before_s=5, after_s=15, drain_s=120),
        Scenario("soak", f"soak {1 if short else 10} min: events, connects, disconnects",
                 None, users=20, devices=2, rate=20, before_s=0, after_s=60 if short else 600,
                 churn_s=30.0),
    ]



def start_topology(
    run_dir: Path, env: dict[str, str] | None = None, pubsub: dict[str, str] | None = None,
    app_health: bool = True,
) -> Topology:
    """The suite's topology (Redis AOF on). `pubsub` overrides metadata of components/pubsub.yaml
    in a copy of the components (for measuring alternatives); app_health=False drops daprd's app
    health check flags."""
    t = Topology(run_dir, fixed_ports=False, extra_env=dict(env or ENV), redis_aof=True)
    if pubsub:
        import shutil

        import yaml

        res = run_dir / "components"
        shutil.copytree(t.resources, res)
        doc = yaml.safe_load((res / "pubsub.yaml").read_text())
        for m in doc["spec"]["metadata"]:
            if m["name"] in pubsub:
                m["value"] = pubsub[m["name"]]
        (res / "pubsub.yaml").write_text(yaml.safe_dump(doc))
        t.resources = res
    if not app_health:
        for a in t.apps.values():
            a.sidecar_flags = []
    t.start()
    return t


async def main_async(args: argparse.Namespace) -> int:
    scenarios = plan(args.short)
    if args.only:
        wanted = args.only.split(",")
        scenarios = [s for s in scenarios if s.name in wanted]
    mode = "short" if args.short else "full"
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"faults-{mode}.json"
    before = machine()
    t_start = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="tasksync-faults-"))
    print(f"[faults] topology in {run_dir}", file=sys.stderr)
    pubsub = {}
    if args.processing_timeout:
        pubsub["processingTimeout"] = args.processing_timeout
    if args.redeliver_interval:
        pubsub["redeliverInterval"] = args.redeliver_interval
    topo = await in_thread(start_topology, run_dir, None, pubsub, not args.no_app_health)
    scenarios = [s for s in scenarios for _ in range(args.repeat)]
    # kill -USR1 <pid>: print where every task waits (a hung run can be diagnosed live).
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    results: list[dict[str, Any]] = []
    if args.merge and out.exists():  # rows of an earlier run, replaced by name
        results = json.loads(out.read_text())["results"]
    try:
        for sc in scenarios:
            t0 = time.monotonic()
            print(f"[faults] {sc.name}: {sc.fault_label}", file=sys.stderr)
            limit = sc.before_s + sc.after_s + sc.drain_s + sc.users * sc.devices / 10 + 300
            try:
                async with asyncio.timeout(limit):
                    r = await run_scenario(topo, sc)
            except Exception as e:  # a scenario that breaks is a row, not the end of the run
                if isinstance(e, TimeoutError):
                    dump_tasks()
                r = Result(name=sc.name, fault=sc.fault_label, drained=False,
                           notes=f"scenario failed: {e!r}")
            row = {**asdict(r), "ok": r.ok, "wall_s": round(time.monotonic() - t0, 1)}
            results = [x for x in results if x["name"] != sc.name or args.repeat > 1] + [row]
            print(f"[faults]   {json.dumps(row)}", file=sys.stderr)
            save(out, results, {"partial": True, "mode": mode})
            # Whatever a scenario left down comes back before the next one (bounded).
            await in_thread(heal, topo)
    finally:
        await in_thread(topo.stop)
    meta = {
        "command": "python -m bench.faults" + (" --short" if args.short else ""),
        "mode": mode,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "elapsed_min": round((time.monotonic() - t_start) / 60, 1),
        "machine_before": before,
        "machine": machine(),
        "logs": str(run_dir / "logs"),
    }
    if args.merge:
        meta["merged"] = "rows of an earlier run kept; these re-run: " + ",".join(
            sorted({sc.name for sc in scenarios}))
    order = [sc.name for sc in plan(args.short)]
    results.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    save(out, results, meta)
    meta["overrides"] = {**pubsub, "app_health": not args.no_app_health}
    if not args.no_doc:
        write_doc(ROOT / "docs" / "reliability.md", results, meta)
    print(f"[faults] wrote {out}", file=sys.stderr)
    return 0 if all(r["ok"] for r in results) else 1



def dump_tasks() -> None:
    """Where a scenario that overran its bound was waiting (for the report)."""
    for t in asyncio.all_tasks():
        t.print_stack(limit=4, file=sys.stderr)


def heal(topo: Topology) -> None:
    if topo.redis is None or not topo.redis.alive:
        topo.start_redis()
    if topo.placement is None or not topo.placement.alive:
        topo.start_placement()
    for name, a in topo.apps.items():
        for part, p in (("app", a.app), ("daprd", a.sidecar)):
            if p is None or not p.alive:
                topo.start_part(name, part)
            elif part == "app":
                p.signal(signal.SIGCONT)
    for name in topo.apps:
        wait_until(lambda n=name: _ready(topo, n), 120, f"{name} ready")


def _ready(topo: Topology, name: str) -> bool:
    topo.wait_app(name, 120)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--short", action="store_true", help="about 5 minutes (smaller numbers)")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--no-doc", action="store_true", help="don't rewrite docs/reliability.md")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other rows of the existing JSON (re-run some rows only)")
    ap.add_argument("--repeat", type=int, default=1, help="run each scenario N times")
    ap.add_argument("--out", help="raw JSON path (default bench/results/faults-<mode>.json)")
    # Alternatives to measure against components/ and dapr.yaml (docs/operations.md).
    ap.add_argument("--processing-timeout", help="pubsub processingTimeout (ms) override")
    ap.add_argument("--redeliver-interval", help="pubsub redeliverInterval (ms) override")
    ap.add_argument("--no-app-health", action="store_true", help="daprd without app health checks")
    args = ap.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
