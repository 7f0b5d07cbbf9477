"""The fault suite's report: the raw JSON and the table in docs/reliability.md."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


# -- report -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg": [round(load1, 2), round(load5, 2), round(load15, 2)],
            "kernel": platform.release()}


def fmt_row(r: dict[str, Any]) -> str:
    per_dev = f"{r['delivered']}/{r['expected']} (worst {r['min_device_ratio']:.3f})"
    reasons = ",".join(f"{k}:{v}" for k, v in r["resync_reasons"].items())
    resync = f"{r['resync_required']}" + (f" ({reasons})" if reasons else "")
    return (f"| {r['name']} | {r['fault']} | {r['published']} | {per_dev} | {r['duplicates']} | "
            f"{r['gaps']} | {r['lost']} | {resync} | {r['recover_s']:.1f} | "
            f"{r['fault_p99_s']:.2f} / {r['fault_max_s']:.2f} | "
            f"{'yes' if r['ok'] else '**NO**'} |")


def write_doc(path: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    begin, end = "<!-- bench.faults:begin -->", "<!-- bench.faults:end -->"
    lines = [
        begin,
        f"Run: `{meta['command']}` ({meta['mode']} mode), {meta['date']}, {meta['elapsed_min']} "
        f"min. Machine: {meta['machine']['cpus']} cores, load average before "
        f"{meta['machine_before']['loadavg']}, after {meta['machine']['loadavg']} (shared, "
        "noisy). Raw: `bench/results/faults-" + meta["mode"] + ".json`."
        + (f" Merged: {meta['merged']}." if meta.get("merged") else ""),
        "",
        "| scenario | fault | published | delivered per device (sum; worst device) | "
        "duplicates | gaps | lost | resync_required | recover s | fault p99 / max delay s | "
        "ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[fmt_row(r) for r in results],
        "",
    ]
    for r in results:
        details = {k: v for k, v in r["extra"].items()}
        details.update(reconnects=r["reconnects"], close_codes=r["close_codes"],
                       publish_retries=r["publish_retries"], delay_p99_s=r["delay_p99_s"],
                       skipped_by_resync=r["skipped_by_resync"], drained=r["drained"])
        lines.append(f"- **{r['name']}**: " + ", ".join(f"{k}={v}" for k, v in details.items())
                     + (f". {r['notes']}" if r["notes"] else ""))
    lines.append(end)
    block = "\n".join(lines)
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text + "\n" + block + "\n"
    path.write_text(text)


def save(out: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
