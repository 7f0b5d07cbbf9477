"""The run command itself (devtools.run, what scripts/run.sh execs), on free ports and its own run
dir: producer access files (mode 0600) that work for a publish, then SIGINT stops every process
it started and frees every port, promptly."""

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import websockets

from devtools.procs import port_open, wait_until
from devtools.topology import ROOT
from tests.integration.harness import SECRET, token


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                # Field 4 of stat is the parent pid; the name (field 2) may hold spaces.
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # exited; only waiting to be reaped


async def publish_like_the_docs(access: dict[str, str], gw_port: int) -> None:
    """What docs/operations.md tells a producer to do, end to end to a connected client."""
    u = f"ext-{uuid.uuid4().hex[:8]}"
    async with websockets.connect(
        f"ws://127.0.0.1:{gw_port}/ws?device=d1",
        additional_headers={"Authorization": f"Bearer {token(u)}"},
    ) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 15))["type"] == "welcome"
        body = {"type": "task_created", "data": {"id": 7, "title": "x"}, "audience": [u]}
        async with httpx.AsyncClient(timeout=15) as http:
            r = await http.post(access["PUBLISH_URL"], json=body)
            assert r.status_code == 401  # the token is required
            r = await http.post(
                access["PUBLISH_URL"], json=body,
                headers={"dapr-api-token": access["DAPR_API_TOKEN"]},
            )
            assert r.status_code == 204, r.text
        while (frame := json.loads(await asyncio.wait_for(ws.recv(), 30)))["type"] == "ping":
            pass
        assert frame["seq"] == 1 and frame["data"]["id"] == 7


def test_run_command_publishes_for_producers_and_stops_everything_on_sigint(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    out = (tmp_path / "run.out").open("wb")
    env = {**os.environ, "TASKSYNC_JWT_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.run", "--free-ports", "--run-dir", str(run_dir)],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "run.out").read_text())
            return "Ctrl-C stops everything" in (tmp_path / "run.out").read_text()

        wait_until(ready, 240, "run command ready")
        for name in ("producer.env", "producer.json", "topology.json"):
            assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o600, name
        access = json.loads((run_dir / "producer.json").read_text())
        env_file = dict(
            line.split("=", 1) for line in (run_dir / "producer.env").read_text().splitlines()
        )
        assert env_file == access
        assert access["PUBLISH_URL"].endswith("/v1.0/publish/pubsub/task-updates")
        printed = (tmp_path / "run.out").read_text()
        assert access["PUBLISH_URL"] in printed and access["DAPR_API_TOKEN"] in printed
        topo = json.loads((run_dir / "topology.json").read_text())

        asyncio.run(publish_like_the_docs(access, topo["apps"]["gateway-gw-b"]["app"]))

        kids = descendants(proc.pid)
        assert len(kids) >= 2 + 2 * len(topo["apps"])  # Redis, placement, each app and daprd
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
    left = [p for p in kids if not gone(p)]
    assert left == [], left
    ports = [topo["redis"], topo["placement"]]
    ports += [p for a in topo["apps"].values() for p in (a["app"], a["dapr_http"], a["dapr_grpc"])]
    assert [p for p in ports if port_open(p)] == []
    assert not (run_dir / "producer.env").exists()  # the token died with the run
    assert took < 30, f"stop took {took:.1f}s"
    print(f"run command stopped in {took:.1f}s")
