"""JSON results of bench.compare -> the top section of docs/benchmarks.md + PNG plots.

Runs in the peers venv (matplotlib is not a project dependency):
    ~/.cache/tasksync/bench-peers-venv/bin/python -m bench.report bench/results/compare-short.json
"""

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib  # type: ignore[import-not-found]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"
BEGIN, END = "<!-- bench.compare:begin -->", "<!-- bench.compare:end -->"
ORDER = ["tasksync", "socketio", "centrifugo"]
LABEL = {"tasksync": "tasksync", "socketio": "python-socketio", "centrifugo": "Centrifugo"}


def get(d: Any, *path: Any) -> Any:
    for k in path:
        if d is None:
            return None
        d = d.get(k) if isinstance(d, dict) else (d[k] if isinstance(d, list) and
                                                   -len(d) <= k < len(d) else None)
    return d


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def rows(systems: dict[str, Any], plan: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(measure, better, system -> value)"""
    out: list[tuple[str, str, dict[str, Any]]] = []

    def add(name: str, better: str, f: Any) -> None:
        out.append((name, better, {n: f(s) for n, s in systems.items()}))

    add("saturation: highest rate with ≥95% delivered and p99 < 500 ms (events/s)", "↑",
        lambda s: s.get("saturation_rate") or (f"< {s['sweep'][0]['rate']:g}" if s.get("sweep")
                                              else None))
    add("max delivered rate in the sweep (events/s)", "↑",
        lambda s: max((st["delivered_rate"] for st in s.get("sweep", [])), default=None))
    for i, rate in enumerate(plan["fixed"]):
        for p in ("p50", "p99", "p999"):
            add(f"{p.replace('p999', 'p99.9')} latency at {rate:g}/s (ms)", "↓",
                lambda s, i=i, p=p: get(s, "fixed", i, f"{p}_ms"))
        add(f"server CPU per delivered event at {rate:g}/s (µs, all processes)", "↓",
            lambda s, i=i: get(s, "fixed", i, "cpu_total_us_per_event"))
    for i, level in enumerate(plan["conn_levels"], start=1):
        add(f"idle RSS per connection at {level:,} conns (KiB)", "↓",
            lambda s, i=i: get(s, "idle", i, "rss_kb_per_conn"))
        add(f"idle CPU at {level:,} conns (% of one core, all processes)", "↓",
            lambda s, i=i: get(s, "idle", i, "cpu_pct"))
        add(f"one broadcast to {level:,} idle connections: last delivery (ms)", "↓",
            lambda s, i=i: get(s, "broadcast_at_level", i - 1, "last_ms"))
        add(f"one broadcast to {level:,} idle connections: delivered", "↑",
            lambda s, i=i: get(s, "broadcast_at_level", i - 1, "delivered"))
    add("idle RSS with no connection (MiB, all processes)", "↓",
        lambda s: get(s, "idle", 0, "rss_mb"))
    add(f"time to open {plan['conn_levels'][-1]:,} connections, 50 at a time (s)", "↓",
        lambda s: get(s, "connect", "seconds"))
    add(f"{plan['storm']:,} connecting at once: welcomed", "↑",
        lambda s: get(s, "storm", "welcomed"))
    add(f"{plan['storm']:,} connecting at once: p99 connect time (ms)", "↓",
        lambda s: get(s, "storm", "p99_ms"))
    add("after the storm: seconds until the servers are back under 25% CPU (max 60)", "↓",
        lambda s: get(s, "storm", "settle_after", "settle_s"))
    add(f"resume after {plan['missed']} missed events: reconnect → last event (ms, median)", "↓",
        lambda s: median([r["resume_ms"] for r in s.get("resume", [])]) if "resume" in s
        else None)
    add(f"broadcast to {plan['users']:,} connections: first delivery (ms, median)", "↓",
        lambda s: median([b["first_ms"] for b in s.get("broadcast", [])]))
    add(f"broadcast to {plan['users']:,} connections: last delivery (ms, median)", "↓",
        lambda s: median([b["last_ms"] for b in s.get("broadcast", [])]))
    return out


def ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "-"
    return f"{a / b:.2g}x" if a / b < 10 else f"{a / b:,.0f}x"


def summary_table(systems: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    peers = [n for n in ORDER[1:] if n in systems]
    head = ["measure", "better", *(LABEL[n] for n in ORDER if n in systems)]
    if "tasksync" in systems:
        head += [f"tasksync / {LABEL[n]}" for n in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, better, vals in rows(systems, plan):
        cells = [name, better, *(fmt(vals[n]) for n in ORDER if n in systems)]
        if "tasksync" in systems:
            cells += [ratio(vals["tasksync"], vals[n]) for n in peers]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sweep_table(name: str, s: dict[str, Any]) -> list[str]:
    out = [f"**{LABEL[name]}** (saturation: {fmt(s.get('saturation_rate'))}/s)", "",
           "| offered /s | delivered /s | delivered | p50 ms | p99 ms | p99.9 ms | "
           "server CPU % | CPU µs/event | load generator CPU % |",
           "|---|---|---|---|---|---|---|---|---|"]
    for st in s.get("sweep", []):
        out.append(f"| {st['rate']:g} | {fmt(st['delivered_rate'])} | "
                   f"{100 * st['delivered_ratio']:.1f}% | {fmt(st['p50_ms'])} | "
                   f"{fmt(st['p99_ms'])} | {fmt(st['p999_ms'])} | {fmt(st['server_cpu_pct'])} | "
                   f"{fmt(st['cpu_total_us_per_event'])} | {fmt(st['loadgen_cpu_pct'])} |")
    return [*out, ""]


def cpu_by_process(name: str, s: dict[str, Any]) -> list[str]:
    st = get(s, "fixed", -1)
    if not st or not st.get("cpu_us_per_event"):
        return []
    parts = ", ".join(f"{k} {fmt(v)}" for k, v in
                      sorted(st["cpu_us_per_event"].items(), key=lambda kv: -kv[1]))
    return [f"- **{LABEL[name]}** at {st['rate']:g}/s: {parts}"]


def plots(systems: dict[str, Any], tag: str) -> list[str]:
    IMG.mkdir(parents=True, exist_ok=True)
    files = []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for n in ORDER:
        s = systems.get(n)
        cdf = get(s, "fixed", 0, "cdf_ms")
        if cdf:
            ys = [i / (len(cdf) - 1) for i in range(len(cdf))]
            ax.plot(cdf, ys, label=f"{LABEL[n]} @ {get(s, 'fixed', 0, 'rate'):g}/s")
    ax.set_xscale("log")
    ax.set_xlabel("publish → client receive (ms, log)")
    ax.set_ylabel("fraction of events")
    ax.set_title("Latency CDF at a fixed rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    f = IMG / f"bench-latency-cdf-{tag}.png"
    fig.tight_layout()
    fig.savefig(f, dpi=110)
    files.append(f)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lo, top = 1e9, 1.0
    styles = {"tasksync": ("o", "-"), "socketio": ("s", "--"), "centrifugo": ("^", ":")}
    for n in ORDER:
        sw = get(systems.get(n), "sweep") or []
        if sw:
            xs = [st["rate"] for st in sw]
            lo, top = min(lo, *xs), max(top, *xs)
            ax.plot(xs, [max(1.0, st["delivered_rate"]) for st in sw], marker=styles[n][0],
                    linestyle=styles[n][1], label=LABEL[n], alpha=0.85)
    if top > 1:
        ax.plot([lo, top], [lo, top], "k-", alpha=0.2, lw=4, label="offered")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered events/s")
    ax.set_ylabel("delivered events/s")
    ax.set_title("Delivered vs offered rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    f = IMG / f"bench-delivered-vs-offered-{tag}.png"
    fig.tight_layout()
    fig.savefig(f, dpi=110)
    files.append(f)
    plt.close(fig)
    return [str(p.relative_to(ROOT / "docs")) for p in files]


def section(doc: dict[str, Any], src: Path) -> str:
    systems = {n: doc["systems"][n] for n in ORDER if n in doc.get("systems", {})}
    plan, m = doc["plan"], doc["machine"]
    tag = plan["mode"]
    imgs = plots(systems, tag)
    when = ", ".join(f"{LABEL[n]} {s.get('when', '?')}" for n, s in systems.items())
    ver: dict[str, str] = {}
    for s in systems.values():
        ver.update(s.get("versions", {}))
    out = [
        BEGIN,
        f"## Peer comparison: tasksync vs python-socketio vs Centrifugo ({tag} run)",
        "",
        "> A `--short` run (1,000 connections, 5 s sweep steps) on the shared, noisy 2-core "
        "machine while other work was running. Ratios are the comparable part; absolute figures "
        "move with the machine's load."
        if tag == "short" else "> Full run. Absolute figures move with the machine's load.",
        "",
        "```sh",
        *sorted({f".venv/bin/python -m bench.compare {s.get('command', doc.get('command', ''))}"
                 .replace(" --no-report", "").rstrip() for s in systems.values()}),
        "```",
        "",
        f"Raw results: `{src.relative_to(ROOT)}`. Runs: {when}. Machine: {m['nproc']} cores, "
        f"{m['cpu_model']}, kernel {m['kernel']}, {m['mem_total']} RAM, Python {m['python']}, "
        f"{m['redis']}. Versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()) + ".",
        "",
        "Setup (all on 127.0.0.1, one shared load generator process on uvloop, raw WebSocket "
        "clients speaking each system's own protocol, no compression): every system runs 2 "
        "server nodes and its own Redis (Debian's redis-server). tasksync = the full local "
        "topology (Redis, placement, sessions host + daprd, 2 gateways + daprds, producer + "
        "daprd), published to via the producer's daprd. python-socketio = 2 uvicorn nodes with "
        "AsyncRedisManager, one room per user, external `write_only` emitter. Centrifugo = 2 "
        "nodes on the Redis engine, server-side personal channel `personal:#<user>` with "
        "history (1000) and forced recovery, HTTP server API. Each event goes to one random "
        f"user of {plan['users']:,} connected users (spread over both nodes); latency = "
        "`receive time - sent_at` (sent_at set by the load generator just before the publish "
        "call, so the publish API's own latency is included). CPU from /proc utime+stime of "
        "every server process group over the step (including its drain); RSS summed over "
        "processes.",
        "",
        "### Summary (ratio = tasksync ÷ peer; see `better` for the direction)",
        "",
        *summary_table(systems, plan),
        "",
        f"![latency CDF]({imgs[0]}) ![delivered vs offered]({imgs[1]})",
        "",
        f"### Rate sweep ({plan['step_s']:g} s per step; stops after two steps past saturation)",
        "",
    ]
    for n, s in systems.items():
        out += sweep_table(n, s)
    out += ["### Server CPU per delivered event, by process (µs)", ""]
    for n, s in systems.items():
        out += cpu_by_process(n, s)
    out += ["", "### Notes", ""]
    for n, s in systems.items():
        if "resume" not in s:
            out.append(f"- {LABEL[n]}: no resume test (python-socketio has no connection "
                       "state recovery; an app would have to build its own replay).")
        for r in s.get("resume", []):
            if r["received"] != r["published"] or r["duplicates"]:
                out.append(f"- {LABEL[n]}: resume anomaly {r}")
            if r.get("order_inversions"):
                out.append(f"- {LABEL[n]}: {r['order_inversions']} adjacent inversions among "
                           f"{r['received']} events that were published one after the other "
                           "(delivery order differs from publish order)")
        for what, d in (("connect ramp", s.get("connect")), ("storm", s.get("storm")),
                        ("load connections", s.get("load_connections"))):
            if d and d.get("failed"):
                errs = "; ".join(f"{c} x `{e}`" for e, c in sorted(d.get("errors", {}).items(),
                                                                  key=lambda kv: -kv[1])[:3])
                out.append(f"- {LABEL[n]}: {what}: {d['failed']} connections failed ({errs})")
        for ph, err in (s.get("phase_errors") or {}).items():
            out.append(f"- {LABEL[n]}: phase `{ph}` failed: {err}")
        if s.get("log_errors"):
            out.append(f"- {LABEL[n]}: {len(s['log_errors'])} error lines in server logs, e.g. "
                       f"`{s['log_errors'][0][:200]}`")
        sw = s.get("sweep", [])
        if sw and s.get("saturation_rate") == sw[-1]["rate"] == max(plan["rates"]):
            out.append(f"- {LABEL[n]}: every sweep step passed: saturation is at or above the "
                       f"top offered rate ({sw[-1]['rate']:g}/s), not measured beyond it.")
        if s.get("loadavg_at_start"):
            out.append(f"- {LABEL[n]}: machine load average at its start "
                       f"{s['loadavg_at_start']} (1/5/15 min; 2 cores; other work was running)")
        lg = max((st["loadgen_cpu_pct"] for st in s.get("sweep", [])), default=0)
        out.append(f"- {LABEL[n]}: load generator CPU peaked at {lg:.0f}% of one core in the "
                   "sweep (100% would make it the bottleneck).")
    out += ["- Load generator client choice: raw Engine.IO/Socket.IO over `websockets` instead of "
            "python-socketio's AsyncClient (`bench/client_cost.py`: 204 vs 311 µs of load "
            "generator CPU per event, emit included, 200 clients, 3,000 events).",
            "", END]
    return "\n".join(out)


def main() -> None:
    src = Path(sys.argv[1]).resolve()
    doc = json.loads(src.read_text())
    block = section(doc, src)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        cut = text.find("\n## ")
        cut = len(text) if cut < 0 else cut + 1
        text = text[:cut] + block + "\n\n" + text[cut:]
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
