"""The local topology: Redis, placement, and every app of dapr.yaml with its own daprd.

Used by the run command (fixed ports from dapr.yaml, supervision and Redis AOF on) and by the test
suite (every port replaced by a free one, own data directory, no supervision: fault tests kill and
restart processes by name themselves), so a demo and any number of test runs never collide.

Process names: `<appID>-<TASKSYNC_REPLICA_ID>` when the app sets a replica id (gateway-gw-a,
sessions-s1), else the app-id (producer). Methods taking a name also accept an app-id that names
several replicas ("sessions" = every sessions replica).
"""

import json
import os
import secrets
import shutil
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.jaeger import Jaeger, dapr_config
from devtools.procs import Proc, free_port, port_open, stop_all, wait_until
from devtools.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
DAPR_VERSION = os.environ.get("DAPR_VERSION", "1.18.2")
PLACEMENT_DISSEMINATE_TIMEOUT = "20s"


def dapr_bin_dir() -> Path:
    cache = Path(os.environ.get("TASKSYNC_CACHE", Path.home() / ".cache" / "tasksync"))
    return cache / f"dapr-{DAPR_VERSION}"


def http_status(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def app_health_flags(app: dict[str, Any]) -> list[str]:
    """daprd's app health check flags from the multi-app run fields of one dapr.yaml app (the
    names `dapr run -f` reads). With them daprd stops delivering pub/sub messages to an app
    that fails its probes, so a dead app's in-flight messages fail over (docs/operations.md)."""
    if not app.get("enableAppHealthCheck"):
        return []
    flags = ["--enable-app-health-check"]
    for key, flag in (
        ("appHealthCheckPath", "--app-health-check-path"),
        ("appHealthProbeInterval", "--app-health-probe-interval"),  # seconds
        ("appHealthProbeTimeout", "--app-health-probe-timeout"),  # milliseconds
        ("appHealthThreshold", "--app-health-threshold"),
    ):
        if key in app:
            flags += [flag, str(app[key])]
    return flags


@dataclass
class AppSpec:
    name: str  # unique process name, e.g. "gateway-gw-a"
    app_id: str
    app_port: int
    http_port: int
    grpc_port: int
    internal_grpc_port: int
    metrics_port: int
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # daprd flags from the app's multi-app run fields (enableAppHealthCheck, appHealth*).
    sidecar_flags: list[str] = field(default_factory=list)
    app: Proc | None = None
    sidecar: Proc | None = None


class Topology:
    def __init__(
        self,
        run_dir: Path,
        fixed_ports: bool,
        extra_env: dict[str, str] | None = None,
        supervise: bool = False,
        redis_aof: bool = False,
        tracing: bool = False,
    ):
        self.run_dir = run_dir
        self.fixed = fixed_ports
        self.extra_env = extra_env or {}
        self.bin = dapr_bin_dir()
        spec = yaml.safe_load((ROOT / "dapr.yaml").read_text())
        common = spec.get("common", {})
        self.resources = (ROOT / common.get("resourcesPath", "components")).resolve()
        self.config = (
            ROOT / common.get("configFilePath", "components/config/config.yaml")
        ).resolve()
        self.log_level = os.environ.get("TASKSYNC_DAPR_LOG_LEVEL", common.get("logLevel", "warn"))
        self.redis_port = 6390 if fixed_ports else free_port()
        self.placement_port = 50005 if fixed_ports else free_port()
        self.api_token = secrets.token_urlsafe(24)  # app -> daprd
        self.app_token = secrets.token_urlsafe(24)  # daprd -> app
        self.apps: dict[str, AppSpec] = {}
        for a in spec["apps"]:
            env = {str(k): str(v) for k, v in (a.get("env") or {}).items()}
            name = a["appID"] + (
                f"-{env['TASKSYNC_REPLICA_ID']}" if "TASKSYNC_REPLICA_ID" in env else ""
            )
            pick = (lambda v: int(v)) if fixed_ports else (lambda v: free_port())
            self.apps[name] = AppSpec(
                name=name,
                app_id=a["appID"],
                app_port=pick(a["appPort"]),
                http_port=pick(a["daprHTTPPort"]),
                grpc_port=pick(a["daprGRPCPort"]),
                internal_grpc_port=free_port(),
                metrics_port=pick(a["metricsPort"]),
                command=[str(c) for c in a["command"]],
                env=env,
                sidecar_flags=app_health_flags(a),
            )
        self.redis: Proc | None = None
        self.placement: Proc | None = None
        self.data_dir = run_dir / "data"
        self.log_dir = run_dir / "logs"
        self.redis_aof = redis_aof
        # Trace backend (devtools/jaeger.py); daprds read the per-run config written at start.
        self.jaeger = Jaeger.on_ports(fixed_ports) if tracing else None
        self.run_config = run_dir / "dapr-config.yaml"
        self.supervisor = (
            Supervisor(self.procs, self.log_dir / "supervisor.log")
            if supervise
            else None
        )

    def procs(self) -> list[Proc]:
        ps = [self.redis, self.placement, self.jaeger.proc if self.jaeger else None]
        ps += [p for a in self.apps.values() for p in (a.app, a.sidecar)]
        return [p for p in ps if p is not None]

    def names(self, name: str) -> list[str]:
        """A process name, or an app-id standing for all of its replicas."""
        if name in self.apps:
            return [name]
        found = [n for n, a in self.apps.items() if a.app_id == name]
        if not found:
            raise KeyError(name)
        return found

    def replicas(self, app_id: str) -> list[AppSpec]:
        return [self.apps[n] for n in self.names(app_id)]

    def any_alive(self, app_id: str) -> AppSpec:
        """A replica whose daprd runs (any daprd can call any actor through placement)."""
        for a in self.replicas(app_id):
            if a.sidecar is not None and a.sidecar.alive:
                return a
        raise RuntimeError(f"no {app_id} replica is running")

    # -- environment -----------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_API"))}
        env.update(self.extra_env)
        return env

    def _sidecar_env(self) -> dict[str, str]:
        env = self._base_env()
        env["TASKSYNC_REDIS_HOST"] = f"127.0.0.1:{self.redis_port}"
        env["DAPR_API_TOKEN"] = self.api_token
        env["APP_API_TOKEN"] = self.app_token
        return env

    def _app_env(self, a: AppSpec) -> dict[str, str]:
        env = self._base_env()
        env.update(a.env)
        env.update(
            APP_PORT=str(a.app_port),
            DAPR_HTTP_PORT=str(a.http_port),
            DAPR_GRPC_PORT=str(a.grpc_port),
            DAPR_API_TOKEN=self.api_token,
            APP_API_TOKEN=self.app_token,
            PYTHONUNBUFFERED="1",
            # The gateways trim consumed entries of the pub/sub streams (no count cap).
            TASKSYNC_STREAM_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
        )
        env.setdefault("TASKSYNC_REPLICA_ID", a.name)
        if self.jaeger is not None:  # the gateways' own spans (gateway/tracing.py)
            env["TASKSYNC_TRACING_ENDPOINT"] = self.jaeger.otlp_url
        return env

    # -- processes ---------------------------------------------------------------------------
    def start_redis(self) -> None:
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        d = self.data_dir / "redis"
        d.mkdir(parents=True, exist_ok=True)
        self.redis = Proc(
            "redis",
            [
                redis,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(d),
                "--save",
                "",
                # AOF (fsync once a second): a restarted Redis comes back with its data.
                *(
                    ["--appendonly", "yes", "--appendfsync", "everysec"]
                    if self.redis_aof
                    else ["--appendonly", "no"]
                ),
            ],
            self._base_env(),
            ROOT,
            self.log_dir,
        ).start()
        wait_until(lambda: port_open(self.redis_port), 20, "redis")

    def start_placement(self) -> None:
        health = free_port()
        self.placement = Proc(
            "placement",
            [
                str(self.bin / "placement"),
                "--port",
                str(self.placement_port),
                "--healthz-port",
                str(health),
                "--metrics-port",
                str(free_port()),
                "--healthz-listen-address",
                "127.0.0.1",
                "--metrics-listen-address",
                "127.0.0.1",
                "--listen-address",
                "127.0.0.1",
                "--id",
                "dapr-placement-0",
                "--initial-cluster",
                f"dapr-placement-0=127.0.0.1:{free_port()}",
                # Longer than the sessions host's drain (drainOngoingCallTimeout 10 s): a daprd
                # drains in-flight calls before it acks UPDATE, and placement's default 8 s
                # kicks it mid-round, after which 1.18.2 leaves its actor types blocked for good
                # (see docs/operations.md). Must stay below daprd's --actors-disseminate-timeout.
                "--disseminate-timeout",
                PLACEMENT_DISSEMINATE_TIMEOUT,
                "--log-level",
                self.log_level,
            ],
            self._base_env(),
            ROOT,
            self.log_dir,
        ).start()
        wait_until(
            lambda: http_status(f"http://127.0.0.1:{health}/healthz") == 200, 30, "placement"
        )

    def start_app(self, name: str) -> None:
        for n in self.names(name):
            self._start_app(n)

    def _start_app(self, name: str) -> None:
        self.start_part(name, "app")
        self.start_part(name, "daprd")

    def start_part(self, name: str, part: str) -> None:
        """Start one process of one replica: part "app" or "daprd" (after kill_part)."""
        a = self.apps[name]
        if part == "app":
            a.app = Proc(f"{name}.app", a.command, self._app_env(a), ROOT, self.log_dir).start()
        elif part == "daprd":
            a.sidecar = Proc(
                f"{name}.daprd", self._sidecar_argv(a), self._sidecar_env(), ROOT, self.log_dir
            ).start()
        else:
            raise ValueError(part)

    def part(self, name: str, part: str) -> Proc:
        a = self.apps[name]
        p = a.app if part == "app" else a.sidecar if part == "daprd" else None
        if p is None:
            raise RuntimeError(f"{name} has no {part} process")
        return p

    def kill_part(self, name: str, part: str) -> None:
        """SIGKILL one process of one replica (its app, or its daprd); the other keeps running."""
        self.part(name, part).kill()

    def _sidecar_argv(self, a: AppSpec) -> list[str]:
        return [
            str(self.bin / "daprd"),
            "--app-id",
            a.app_id,
            "--app-port",
            str(a.app_port),
            "--app-channel-address",
            "127.0.0.1",
            "--dapr-listen-addresses",
            "127.0.0.1",
            "--dapr-http-port",
            str(a.http_port),
            "--dapr-grpc-port",
            str(a.grpc_port),
            "--dapr-internal-grpc-port",
            str(a.internal_grpc_port),
            "--dapr-internal-grpc-listen-address",
            "127.0.0.1",
            "--metrics-port",
            str(a.metrics_port),
            "--enable-metrics=false",
            "--placement-host-address",
            f"127.0.0.1:{self.placement_port}",
            "--resources-path",
            str(self.resources),
            "--config",
            str(self.run_config),
            "--log-level",
            self.log_level,
            "--dapr-graceful-shutdown-seconds",
            "3",
            *a.sidecar_flags,
        ]

    def wait_app(self, name: str, timeout: float = 90) -> None:
        for n in self.names(name):
            self._wait_app(n, timeout)

    def _wait_app(self, name: str, timeout: float) -> None:
        a = self.apps[name]

        def ready() -> bool:
            for p in (a.app, a.sidecar):
                if p is None or not p.alive:
                    raise RuntimeError(f"{p.name if p else name} exited:\n{p.tail() if p else ''}")
            if http_status(f"http://127.0.0.1:{a.http_port}/v1.0/healthz") != 204:
                return False
            # A real probe: the app's own readiness includes an actor call through placement.
            return http_status(f"http://127.0.0.1:{a.app_port}/readyz") == 200

        wait_until(ready, timeout, f"{name} (app + daprd + actor probe)", interval=0.2)

    def stop_app(self, name: str) -> None:
        """SIGTERM: the apps first (they drain through their daprd), then their daprds."""
        apps = [self.apps[n] for n in self.names(name)]
        stop_all([a.app for a in apps if a.app is not None])
        stop_all([a.sidecar for a in apps if a.sidecar is not None])

    def kill_app(self, name: str) -> None:
        """SIGKILL app and daprd; a supervisor leaves them down (use start_app)."""
        for n in self.names(name):
            a = self.apps[n]
            for p in (a.app, a.sidecar):
                if p is not None:
                    p.kill()

    def start(self, names: list[str] | None = None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.start_redis()
        self.start_placement()
        if self.jaeger is not None:
            self.jaeger.start(self.run_dir, self.log_dir, self._base_env(), ROOT)
        otlp = f"127.0.0.1:{self.jaeger.otlp_port}" if self.jaeger else None
        dapr_config(self.config, self.run_config, otlp)
        names = names if names is not None else list(self.apps)
        for n in names:
            self.start_app(n)
        for n in names:
            self.wait_app(n)
        if self.supervisor is not None:
            self.supervisor.start()  # after readiness: a start that fails still fails fast

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.pause()  # first, so nothing comes back while we stop
        # Apps in reverse dapr.yaml order, one app-id at a time (gateways drain through the
        # sessions host), replicas in parallel; then every daprd, then placement and Redis.
        app_ids = list(dict.fromkeys(a.app_id for a in self.apps.values()))
        for app_id in reversed(app_ids):
            stop_all([a.app for a in self.replicas(app_id) if a.app is not None])
        stop_all([a.sidecar for a in self.apps.values() if a.sidecar is not None])
        # Jaeger last: it takes the spans the others flush as they stop.
        stop_all([p for p in (self.placement, self.redis) if p is not None])
        if self.jaeger is not None and self.jaeger.proc is not None:
            stop_all([self.jaeger.proc])
        if self.supervisor is not None:
            self.supervisor.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "redis": self.redis_port,
            "placement": self.placement_port,
            "jaeger_ui": self.jaeger.query_url if self.jaeger else None,
            "apps": {
                n: {
                    "app_id": a.app_id,
                    "app": a.app_port,
                    "dapr_http": a.http_port,
                    "dapr_grpc": a.grpc_port,
                }
                for n, a in self.apps.items()
            },
        }


if __name__ == "__main__":  # debugging aid: python -m devtools.topology
    t = Topology(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".run", fixed_ports=False)
    try:
        t.start()
        print(json.dumps(t.describe(), indent=2))
        input("running; press Enter to stop\n")
    finally:
        t.stop()
