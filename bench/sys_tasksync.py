"""tasksync itself: the real local topology (Redis, placement, sessions host, two gateways,
producer daprd), published to through the producer's daprd like the todo app does."""

import json
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.http1 import Http1Pool
from bench.system import SECRET, Conn, Sink, System, ws_connect
from devtools.topology import DAPR_VERSION, Topology, dapr_bin_dir
from gateway.auth import mint_hs256

GATEWAYS = ("gateway-gw-a", "gateway-gw-b")
ERROR_RE = re.compile(r"\b(ERROR|CRITICAL|Traceback|level=error|level=fatal|panic)\b")


class Tasksync(System):
    name = "tasksync"

    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="bench-tasksync-"))
        self.topo = Topology(self.run_dir, fixed_ports=False,
                             extra_env={"TASKSYNC_JWT_SECRET": SECRET, "LOG_LEVEL": "WARNING"})
        self.pool: Http1Pool | None = None

    def start(self) -> None:
        if not (dapr_bin_dir() / "daprd").exists():
            raise RuntimeError(f"{dapr_bin_dir()}/daprd missing: run ./scripts/setup.sh")
        self.topo.start()

    def stop(self) -> None:
        self.topo.stop()

    def processes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, p in (("redis", self.topo.redis), ("placement", self.topo.placement)):
            if p is not None and p.popen is not None:
                out[name] = p.popen.pid
        for name, a in self.topo.apps.items():
            for kind, proc in (("app", a.app), ("daprd", a.sidecar)):
                if proc is not None and proc.popen is not None:
                    out[f"{name}.{kind}"] = proc.popen.pid
        return out

    def versions(self) -> dict[str, str]:
        return {"tasksync": "worktree HEAD", "dapr": DAPR_VERSION}

    def logs_with_errors(self) -> list[str]:
        out = []
        for f in sorted(self.topo.log_dir.glob("*.log")):
            lines = [ln for ln in f.read_text(errors="replace").splitlines() if ERROR_RE.search(ln)]
            out += [f"{f.name}: {ln[:300]}" for ln in lines[:5]]
            if len(lines) > 5:
                out.append(f"{f.name}: ... {len(lines) - 5} more error lines")
        return out

    async def open(self, user: str, node: int, position: Any = None) -> Conn:
        port = self.topo.apps[GATEWAYS[node % 2]].app_port
        url = f"ws://127.0.0.1:{port}/ws?device=d-{user}&batch=1"  # as the shipped clients do
        if position is not None:  # (epoch, seq, bepoch, bseq): both streams' positions
            url += f"&since={position[0]}:{position[1]},{position[2]}:{position[3]}"
        ws = await ws_connect(url, {"Authorization": f"Bearer {mint_hs256(SECRET, user)}"})
        conn = Conn(user, node, ws)
        for _ in range(100):  # the welcome comes first; a ping may not, but be lenient
            f = json.loads(await ws.recv())
            if f.get("type") == "welcome":
                conn.position = (f["epoch"], f["seq"], f["bepoch"], f["bseq"])
                return conn
            if f.get("type") == "resync_required":
                raise RuntimeError(f"resync_required: {f}")
        raise RuntimeError("no welcome")

    async def handle(self, conn: Conn, raw: str | bytes, now: float, sink: Sink) -> None:
        f = json.loads(raw)
        for g in f["frames"] if f.get("type") == "batch" else [f]:
            await self._one(conn, g, now, sink)

    async def _one(self, conn: Conn, f: dict[str, Any], now: float, sink: Sink) -> None:
        if "seq" in f and "data" in f:
            conn.position = (conn.position[0], f["seq"], *conn.position[2:])
            sink(f["data"], now)
        elif "bseq" in f and "data" in f:  # the shared broadcast stream
            conn.position = (*conn.position[:3], f["bseq"])
            sink(f["data"], now)
        elif f.get("type") == "ping":
            await conn.ws.send('{"type":"pong"}')

    async def open_publisher(self) -> None:
        self.pool = Http1Pool(self.topo.apps["producer"].http_port, 32,
                              {"dapr-api-token": self.topo.api_token})

    async def _post(self, body: dict[str, Any]) -> None:
        assert self.pool is not None
        status, text = await self.pool.post("/v1.0/publish/pubsub/task-updates",
                                            json.dumps(body).encode())
        if status != 204:
            raise RuntimeError(f"publish {status}: {text[:200]!r}")

    async def publish(self, user: str, data: dict[str, Any]) -> None:
        await self._post({"event_id": uuid.uuid4().hex, "type": "task_updated",
                          "audience": [user], "data": data})

    async def broadcast(self, users: list[str], data: dict[str, Any]) -> None:
        await self._post({"event_id": uuid.uuid4().hex, "type": "task_updated", "data": data})

    async def close_publisher(self) -> None:
        if self.pool is not None:
            await self.pool.close()
