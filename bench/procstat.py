"""CPU and memory of server processes from /proc, and facts about this machine.

Every server process is started as the leader of its own process group (devtools.procs.Proc), so a
"process" here is a whole group: the leader and anything it spawned. utime+stime of a process
already include all of its threads.
"""

import os
import platform
import subprocess
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces: split after the closing parenthesis.
    return raw[raw.rfind(")") + 2 :].split()


def group_members(pgids: set[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {g: [] for g in pgids}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        f = _stat_fields(entry.name)
        if f is None:
            continue
        pgrp = int(f[2])  # fields after comm: state ppid pgrp ...
        if pgrp in out:
            out[pgrp].append(int(entry.name))
    for g in pgids:  # a leader that left its own group still counts as itself
        if not out[g] and Path(f"/proc/{g}").exists():
            out[g].append(g)
    return out


def cpu_seconds(pid: int) -> float:
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    return (int(f[11]) + int(f[12])) / CLK_TCK  # utime, stime


def rss_bytes(pid: int) -> int:
    f = _stat_fields(pid)
    return int(f[21]) * PAGE if f is not None else 0


def sample(procs: dict[str, int]) -> dict[str, tuple[float, int]]:
    """name -> (cpu seconds, rss bytes) summed over the process group led by that pid."""
    members = group_members(set(procs.values()))
    out = {}
    for name, pgid in procs.items():
        pids = members.get(pgid, [])
        out[name] = (sum(cpu_seconds(p) for p in pids), sum(rss_bytes(p) for p in pids))
    return out


def own_cpu() -> float:
    return cpu_seconds(os.getpid())


def cpu_delta(a: dict[str, tuple[float, int]], b: dict[str, tuple[float, int]]) -> dict[str, float]:
    return {k: round(b[k][0] - a[k][0], 3) for k in a if k in b}


def rss_total(s: dict[str, tuple[float, int]]) -> int:
    return sum(v[1] for v in s.values())


def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis = subprocess.run(["/usr/bin/redis-server", "--version"], capture_output=True, text=True)
    return {
        "nproc": str(os.cpu_count()),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": redis.stdout.strip(),
        "mem_total": next((ln.split(":")[1].strip() for ln in
                           Path("/proc/meminfo").read_text().splitlines()
                           if ln.startswith("MemTotal")), ""),
    }
