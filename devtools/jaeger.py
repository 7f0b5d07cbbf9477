"""Jaeger as the trace backend of a topology (scripts/install-jaeger.sh builds it).

Jaeger v2 (`cmd/jaeger` of module v1.76.0) is an OpenTelemetry collector: it takes its own YAML.
The one written here is the all-in-one default cut to what we use: OTLP/HTTP in, in-memory
storage, the query API/UI; on the ports we choose (free ones in tests), with the collector's own
metrics and Jaeger's self-tracing off (they default to fixed ports, :8888 and :4318, and would
collide with a second run or trace into it).

Also: the per-run Dapr configuration, components/config/config.yaml with its OTLP exporter pointed
at this run's Jaeger, or tracing off when there is none.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.procs import Proc, free_port, port_open, wait_until

JAEGER_VERSION = os.environ.get("JAEGER_VERSION", "1.76.0")


def jaeger_bin() -> Path:
    cache = Path(os.environ.get("TASKSYNC_CACHE", Path.home() / ".cache" / "tasksync"))
    return cache / f"jaeger-{JAEGER_VERSION}" / "jaeger"


def installed() -> bool:
    return jaeger_bin().is_file() and (jaeger_bin().parent / ".built").is_file()


@dataclass
class Jaeger:
    otlp_port: int  # OTLP/HTTP receiver: daprd and the gateways export here
    query_port: int  # query API and UI (http://127.0.0.1:<port>/)
    query_grpc_port: int
    proc: Proc | None = field(default=None, repr=False)

    @staticmethod
    def on_ports(fixed: bool) -> Jaeger:
        if fixed:  # Jaeger's usual ports, for the run command
            return Jaeger(4318, 16686, 16685)
        return Jaeger(free_port(), free_port(), free_port())

    @property
    def otlp_url(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def config(self) -> dict[str, Any]:
        host = "127.0.0.1"
        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                         "exporters": ["jaeger_storage_exporter"]}},
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            },
            "extensions": {
                "jaeger_query": {
                    "storage": {"traces": "memstore"},
                    "enable_tracing": False,
                    "http": {"endpoint": f"{host}:{self.query_port}"},
                    "grpc": {"endpoint": f"{host}:{self.query_grpc_port}"},
                },
                "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
            },
            "receivers": {
                "otlp": {"protocols": {"http": {"endpoint": f"{host}:{self.otlp_port}"}}}},
            # Short batches: a span is queryable a fraction of a second after it arrives.
            "processors": {"batch": {"timeout": "200ms"}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }

    def start(self, run_dir: Path, log_dir: Path, env: dict[str, str], cwd: Path) -> None:
        cfg = run_dir / "jaeger.yaml"
        cfg.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.proc = Proc("jaeger", [str(jaeger_bin()), "--config", str(cfg)], env, cwd,
                         log_dir).start()

        def ready() -> bool:
            if self.proc is None or not self.proc.alive:
                raise RuntimeError(f"jaeger exited:\n{self.proc.tail() if self.proc else ''}")
            return port_open(self.otlp_port) and self.services() is not None

        wait_until(ready, 30, "jaeger (OTLP receiver + query API)", interval=0.2)

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.query_url}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def services(self) -> list[str] | None:
        try:
            data = self._get("/api/services").get("data")
        except OSError:
            return None
        return list(data or [])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace from the query API (Jaeger's JSON: spans + processes), or None while it is
        not (yet) stored."""
        try:
            data = self._get(f"/api/traces/{trace_id}").get("data") or []
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        return dict(data[0]) if data else None


def dapr_config(base: Path, out: Path, otlp_host_port: str | None) -> Path:
    """Write the Dapr Configuration for one run: `base` with tracing exported over OTLP/HTTP to
    `otlp_host_port` (host:port), or with tracing off (samplingRate 0, no exporter) when None:
    daprd would otherwise export to an endpoint nobody listens on."""
    spec = yaml.safe_load(base.read_text())
    tracing = spec.setdefault("spec", {}).setdefault("tracing", {})
    if otlp_host_port is None:
        tracing.pop("otel", None)
        tracing["samplingRate"] = "0"
    else:
        tracing.setdefault("otel", {})["endpointAddress"] = otlp_host_port
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out
