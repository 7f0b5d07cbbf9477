"""Centrifugo peer: two nodes on the Redis engine. Each user is subscribed server-side to its
personal channel `personal:#<user>` (history + forced recovery), connects with an HS256 JWT over
the bidirectional JSON WebSocket protocol, and recovers with the channel's (epoch, offset) in the
connect command. Publishing goes through the HTTP server API."""

import json
import os
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import peers
from bench.http1 import Http1Pool
from bench.system import SECRET, Conn, PeerProcesses, Sink, dumps, ws_connect
from devtools.procs import Proc, free_port, port_open, wait_until
from gateway.auth import mint_hs256

NS = "personal"


def channel(user: str) -> str:
    return f"{NS}:#{user}"


class Centrifugo(PeerProcesses):
    name = "centrifugo"

    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="bench-centrifugo-"))
        self.api_key = secrets.token_urlsafe(18)
        self.redis: Proc | None = None
        self.nodes_p: list[Proc] = []
        self.ports: list[int] = []
        self.pool: Http1Pool | None = None

    def config(self, i: int, port: int, redis_port: int) -> dict[str, Any]:
        return {
            "http_server": {"address": "127.0.0.1", "port": port},
            "log": {"level": "warn"},
            "node": {"name": f"cf-{i}"},
            "engine": {"type": "redis",
                       "redis": {"address": [f"redis://127.0.0.1:{redis_port}"]}},
            "client": {
                "token": {"hmac_secret_key": SECRET},
                # Default 300: a resume of more missed events fails (recovered=false). The same
                # bound as tasksync's retention (TASKSYNC_RETENTION_EVENTS=1000).
                "recovery_max_publication_limit": 1000,
                "subscribe_to_user_personal_channel": {"enabled": True,
                                                       "personal_channel_namespace": NS},
            },
            "channel": {"namespaces": [{
                "name": NS, "history_size": 1000, "history_ttl": "24h",
                "force_recovery": True, "force_positioning": True,
                "allow_user_limited_channels": True,
            }]},
            "http_api": {"key": self.api_key},
        }

    def start(self) -> None:
        binary = peers.ensure_centrifugo()
        self.redis, redis_port = peers.start_redis(self.run_dir)
        for i in range(self.nodes):
            port = free_port()
            cfg = self.run_dir / f"cf-{i}.json"
            cfg.write_text(json.dumps(self.config(i, port, redis_port), indent=1))
            self.ports.append(port)
            self.nodes_p.append(Proc(f"centrifugo-{i}", [str(binary), "--config", str(cfg)],
                                     dict(os.environ), self.run_dir, self.run_dir).start())
        for p, port in zip(self.nodes_p, self.ports, strict=True):
            def up(p: Proc = p, port: int = port) -> bool:
                if not p.alive:
                    raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
                return port_open(port)
            wait_until(up, 60, p.name)

    def versions(self) -> dict[str, str]:
        r = subprocess.run([str(peers.centrifugo_bin()), "version"], capture_output=True,
                           text=True, timeout=30)
        # `go install` leaves the version string unset (the binary says v0.0.0).
        return {"centrifugo": f"{peers.CENTRIFUGO_VERSION} (go install; binary says "
                              f"{r.stdout.strip()!r})"}

    def logs_with_errors(self) -> list[str]:
        out = []
        for f in sorted(self.run_dir.glob("centrifugo-*.log")):
            lines = [ln for ln in f.read_text(errors="replace").splitlines()
                     if '"level":"error"' in ln or "ERR" in ln or "panic" in ln]
            out += [f"{f.name}: {ln[:300]}" for ln in lines[:5]]
        return out

    async def open(self, user: str, node: int, position: Any = None) -> Conn:
        port = self.ports[node % len(self.ports)]
        ws = await ws_connect(f"ws://127.0.0.1:{port}/connection/websocket")
        conn = Conn(user, node, ws)
        req: dict[str, Any] = {"token": mint_hs256(SECRET, user)}
        if position is not None:
            req["subs"] = {channel(user): {"recover": True, "epoch": position[0],
                                           "offset": position[1]}}
        await ws.send(dumps({"id": 1, "connect": req}))
        for _ in range(100):
            raw = await ws.recv()
            for line in str(raw).splitlines():
                r = json.loads(line)
                if r.get("id") == 1:
                    if "error" in r:
                        raise RuntimeError(f"connect error: {r['error']}")
                    sub = r["connect"].get("subs", {}).get(channel(user), {})
                    if position is not None and not sub.get("recovered"):
                        raise RuntimeError(f"not recovered: {str(sub)[:200]}")
                    pubs = sub.get("publications", [])
                    conn.replayed = [p["data"] for p in pubs]
                    last = pubs[-1].get("offset", 0) if pubs else sub.get("offset", 0)
                    conn.position = (sub.get("epoch", ""), last)
                    return conn
        raise RuntimeError("no connect reply")

    async def handle(self, conn: Conn, raw: str | bytes, now: float, sink: Sink) -> None:
        text = raw if isinstance(raw, str) else raw.decode()
        for line in text.splitlines():
            if line == "{}":  # server ping: answer with an empty command
                await conn.ws.send("{}")
                continue
            r = json.loads(line)
            pub = r.get("push", {}).get("pub")
            if pub is not None:
                conn.position = (conn.position[0], pub.get("offset", conn.position[1]))
                sink(pub["data"], now)

    async def open_publisher(self) -> None:
        self.pool = Http1Pool(self.ports[0], 32, {"X-API-Key": self.api_key})

    async def _api(self, method: str, body: dict[str, Any]) -> None:
        assert self.pool is not None
        status, text = await self.pool.post(f"/api/{method}", dumps(body))
        if status != 200 or b'"error"' in text[:200]:
            raise RuntimeError(f"{method} {status}: {text[:200]!r}")

    async def publish(self, user: str, data: dict[str, Any]) -> None:
        await self._api("publish", {"channel": channel(user), "data": data})

    async def broadcast(self, users: list[str], data: dict[str, Any]) -> None:
        await self._api("broadcast", {"channels": [channel(u) for u in users], "data": data})

    async def close_publisher(self) -> None:
        if self.pool is not None:
            await self.pool.close()
