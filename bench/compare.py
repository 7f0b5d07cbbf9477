"""tasksync vs python-socketio vs Centrifugo: same machine, same load generator, same measures.

    .venv/bin/python -m bench.compare --short                 # a few minutes
    .venv/bin/python -m bench.compare                         # full figures
    .venv/bin/python -m bench.compare --short --systems socketio,centrifugo

Writes bench/results/compare-<mode>.json, then docs/benchmarks.md and the plots (bench.report,
run in the peers venv because matplotlib is not a project dependency).
"""

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import measure, peers, procstat
from bench.system import Conn, System, close_all

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass
class Plan:
    mode: str
    users: int = 1000
    rates: list[float] = field(default_factory=lambda: [50, 100, 200, 400, 800, 1600, 3200])
    step_s: float = 10
    fixed: list[float] = field(default_factory=lambda: [50, 200])
    fixed_s: float = 30
    conn_levels: list[int] = field(default_factory=lambda: [1000, 5000])
    storm: int = 1000
    idle_s: float = 30
    broadcasts: int = 3
    resumes: int = 3
    missed: int = 500


def plan_for(a: argparse.Namespace) -> Plan:
    p = Plan("short", users=200, rates=[50, 100, 200, 400, 800, 1600, 3200], step_s=5, fixed=[50],
             fixed_s=10, conn_levels=[1000], storm=1000, idle_s=10, broadcasts=2,
             resumes=1) if a.short else Plan("full")
    for k in ("users", "step_s", "fixed_s", "storm", "idle_s", "missed"):
        if getattr(a, k) is not None:
            setattr(p, k, getattr(a, k))
    for k in ("rates", "fixed", "conn_levels"):
        if getattr(a, k) is not None:
            setattr(p, k, [float(x) if k != "conn_levels" else int(x)
                           for x in getattr(a, k).split(",") if x])
    return p


def make(name: str) -> System:
    if name == "tasksync":
        from bench.sys_tasksync import Tasksync
        return Tasksync()
    if name == "socketio":
        from bench.sys_socketio import SocketIO
        return SocketIO()
    if name == "centrifugo":
        from bench.sys_centrifugo import Centrifugo
        return Centrifugo()
    raise SystemExit(f"unknown system {name}")


async def phase(res: dict[str, Any], name: str, coro: Any) -> Any:
    print(f"  .. {name}", flush=True)
    try:
        return await coro
    except Exception as e:
        res.setdefault("phase_errors", {})[name] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        return None


async def connections(s: System, p: Plan, rec: measure.Recorder, res: dict[str, Any]) -> None:
    base_rss = procstat.rss_total(procstat.sample(s.processes()))
    res["idle"] = [await measure.idle(s, min(p.idle_s, 10), 0, base_rss)]
    conns: list[Conn] = []
    times: list[float] = []
    errors: dict[str, int] = {}
    failed, secs = 0, 0.0
    try:
        for level in p.conn_levels:
            users = [f"c-{i}" for i in range(len(conns) + failed, level)]
            c, t, f, sec = await measure.open_many(s, users, 50, rec, errors=errors)
            conns += c
            times += t
            failed += f
            secs += sec
            st = await measure.settle(s, max_s=15)
            res["idle"].append({**await measure.idle(s, p.idle_s, len(conns), base_rss),
                                "settled": st})
            # One broadcast to every connection open now (after the idle window, so it does
            # not disturb it): first and last delivery.
            res.setdefault("broadcast_at_level", []).append(await phase(
                res, f"broadcast-{level}",
                measure.broadcast(s, rec, [c.user for c in conns], f"lvl-{level}")))
        res["connect"] = {"target": p.conn_levels[-1], "opened": len(conns), "failed": failed,
                          "errors": errors, "concurrency": 50, "seconds": round(secs, 2),
                          "per_s": round(len(conns) / secs, 1) if secs else None,
                          "p50_ms": measure.pct(times, 50), "p99_ms": measure.pct(times, 99)}
    finally:
        await close_all(conns)
    res["settle_after_connections"] = await measure.settle(s, max_s=90)


async def storm(s: System, p: Plan, rec: measure.Recorder) -> dict[str, Any]:
    users = [f"st-{i}" for i in range(p.storm)]
    errors: dict[str, int] = {}
    conns, times, failed, secs = await measure.open_many(s, users, None, rec, errors=errors)
    await close_all(conns)
    return {"connections": p.storm, "welcomed": len(conns), "failed": failed, "errors": errors,
            "seconds": round(secs, 2), "p50_ms": measure.pct(times, 50),
            "p99_ms": measure.pct(times, 99), "max_ms": measure.pct(times, 100),
            "settle_after": await measure.settle(s, max_s=90)}


async def load(s: System, p: Plan, rec: measure.Recorder, res: dict[str, Any]) -> None:
    """Fixed rates, broadcasts and resumes first; the sweep last, since it drives the system
    into overload and a backlog may outlive it."""
    users = [f"u-{i}" for i in range(p.users)]
    errors: dict[str, int] = {}
    conns, _, failed, _ = await measure.open_many(s, users, 50, rec, errors=errors)
    res["load_connections"] = {"users": p.users, "opened": len(conns), "failed": failed,
                               "errors": errors}
    live = [c.user for c in conns]
    try:
        res["settle_after_load_connections"] = await measure.settle(s, max_s=60)
        await measure.load_step(s, rec, live, 20, 2, "warmup")
        res["fixed"] = []
        for rate in p.fixed:
            print(f"     fixed {rate:g}/s", flush=True)
            tag = f"fixed-{rate:g}"
            st = await measure.load_step(s, rec, live, rate, p.fixed_s, tag)
            st["cdf_ms"] = measure.quantiles(rec.lat[tag])
            res["fixed"].append(st)
            st["settle_after"] = await measure.settle(s, max_s=60)
        res["broadcast"] = [await measure.broadcast(s, rec, live, k) for k in range(p.broadcasts)]
        if s.supports_resume:
            res["resume"] = []
            for k in range(p.resumes):
                r = await phase(res, f"resume-{k}", measure.resume(s, rec, f"rs-{k}", p.missed))
                if r is not None:
                    res["resume"].append(r)
        res["settle_before_sweep"] = await measure.settle(s, max_s=60)
        res["sweep"] = []
        fails = 0
        for rate in p.rates:
            print(f"     step {rate:g}/s", flush=True)
            st = await measure.load_step(s, rec, live, rate, p.step_s, f"sweep-{rate:g}")
            res["sweep"].append(st)
            fails = 0 if measure.saturated_ok(st) else fails + 1
            if fails >= 2:
                break  # two steps past saturation: the rest only grows a backlog
        ok = [st["rate"] for st in res["sweep"] if measure.saturated_ok(st)]
        res["saturation_rate"] = max(ok) if ok else None
    finally:
        await close_all(conns)


async def run_system(name: str, p: Plan) -> dict[str, Any]:
    s = make(name)
    res: dict[str, Any] = {"system": name, "nodes": s.nodes,
                           "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    print(f"== {name}: starting", flush=True)
    t0 = time.monotonic()
    await asyncio.to_thread(s.start)
    res["startup_s"] = round(time.monotonic() - t0, 1)
    res["processes"] = sorted(s.processes())
    rec = measure.Recorder()
    try:
        res["versions"] = s.versions()
        await s.open_publisher()
        await phase(res, "connections", connections(s, p, rec, res))
        res["storm"] = await phase(res, "storm", storm(s, p, rec))
        await phase(res, "load", load(s, p, rec, res))
        res["stray_frames"] = rec.stray
    finally:
        res["log_errors"] = s.logs_with_errors()
        await s.close_publisher()
        await asyncio.to_thread(s.stop)
    print(f"== {name}: done in {time.monotonic() - t0:.0f}s", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--short", action="store_true", help="a few minutes instead of the full run")
    ap.add_argument("--systems", default="tasksync,socketio,centrifugo")
    ap.add_argument("--users", type=int, help="connected users during the load steps")
    ap.add_argument("--rates", help="sweep rates, comma separated (events/s)")
    ap.add_argument("--step-s", dest="step_s", type=float, help="seconds per sweep step")
    ap.add_argument("--fixed", help="fixed rates for the latency percentiles")
    ap.add_argument("--fixed-s", dest="fixed_s", type=float)
    ap.add_argument("--conn-levels", dest="conn_levels", help="e.g. 1000,5000")
    ap.add_argument("--storm", type=int, help="connections opened at the same instant")
    ap.add_argument("--idle-s", dest="idle_s", type=float)
    ap.add_argument("--missed", type=int, help="events missed before a resume")
    ap.add_argument("--out", help="JSON path (default bench/results/compare-<mode>.json)")
    ap.add_argument("--no-report", action="store_true")
    a = ap.parse_args()
    p = plan_for(a)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers too
    out = Path(a.out) if a.out else RESULTS / f"compare-{p.mode}.json"
    doc: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    doc.update(machine=procstat.machine(), plan=asdict(p), command=" ".join(sys.argv[1:]))
    doc.setdefault("systems", {})
    names = [n for n in a.systems.split(",") if n]
    if "socketio" in names or not a.no_report:
        peers.ensure_venv()
    try:
        import uvloop
        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    for name in names:
        doc["systems"][name] = runner(run_system(name, p))
        doc["systems"][name]["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        doc["systems"][name]["command"] = " ".join(sys.argv[1:])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    if not a.no_report:
        subprocess.run([str(peers.venv_python()), "-m", "bench.report", str(out)], cwd=ROOT,
                       check=True, timeout=300)


if __name__ == "__main__":
    main()
