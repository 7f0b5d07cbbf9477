"""Print traces from a Jaeger query API as indented span trees (the Go module's Jaeger has no UI).

    .venv/bin/python -m devtools.traces                  # the last 5 traces of service producer
    .venv/bin/python -m devtools.traces <trace id> ...   # these traces
    options: --url http://127.0.0.1:16686  --service producer  --limit 5
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from typing import Any


def fetch(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return list(json.loads(resp.read()).get("data") or [])


def tree(trace: dict[str, Any]) -> list[str]:
    """One line per span, children under their parent, siblings by start time."""
    services = {k: v["serviceName"] for k, v in trace.get("processes", {}).items()}
    spans = {s["spanID"]: s for s in trace.get("spans", [])}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans.values():
        parents = [r["spanID"] for r in s.get("references", []) if r.get("refType") == "CHILD_OF"]
        parent = parents[0] if parents and parents[0] in spans else None
        children.setdefault(parent, []).append(s)
    t0 = min((s["startTime"] for s in spans.values()), default=0)
    lines = [f"trace {trace.get('traceID')} ({len(spans)} spans)"]

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s["startTime"]):
            lines.append(
                f"{'  ' * depth}+{(s['startTime'] - t0) / 1000:8.2f} ms "
                f"{s['duration'] / 1000:7.2f} ms  {services.get(s['processID'], '?')}: "
                f"{s['operationName']}"
            )
            walk(s["spanID"], depth + 1)

    walk(None, 1)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.traces")
    ap.add_argument("trace_ids", nargs="*")
    ap.add_argument("--url", default="http://127.0.0.1:16686", help="Jaeger query base URL")
    ap.add_argument("--service", default="producer")
    ap.add_argument("--limit", type=int, default=5)
    args = ap.parse_args(argv)
    base = args.url.rstrip("/")
    traces: list[dict[str, Any]] = []
    if args.trace_ids:
        for tid in args.trace_ids:
            traces += fetch(f"{base}/api/traces/{urllib.parse.quote(tid)}")
    else:
        q = urllib.parse.urlencode({"service": args.service, "limit": args.limit})
        traces = fetch(f"{base}/api/traces?{q}")
    if not traces:
        print("no traces", file=sys.stderr)
        return 1
    for t in traces:
        print("\n".join(tree(t)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
