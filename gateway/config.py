"""Gateway settings, read once from the environment (names documented in docs/operations.md)."""

import os
import uuid
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _float(name: str, default: str) -> float:
    """A float setting, read when Settings() is built (so tests can set the env first)."""
    return field(default_factory=lambda: float(_env(name, default)))


def _int(name: str, default: str) -> int:
    return field(default_factory=lambda: int(_env(name, default)))


def _csv(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    return tuple(x.strip() for x in raw.split(",") if x.strip())


@dataclass(frozen=True)
class Settings:
    replica_id: str = field(
        default_factory=lambda: _env("TASKSYNC_REPLICA_ID", uuid.uuid4().hex[:8])
    )
    dapr_http_port: int = _int("DAPR_HTTP_PORT", "3500")
    dapr_api_token: str | None = field(default_factory=lambda: os.environ.get("DAPR_API_TOKEN"))
    pubsub: str = "pubsub"
    heartbeat_s: float = _float("TASKSYNC_HEARTBEAT_SECONDS", "15")
    heartbeat_timeout_s: float = _float("TASKSYNC_HEARTBEAT_TIMEOUT_SECONDS", "45")
    send_queue_max: int = _int("TASKSYNC_SEND_QUEUE_MAX", "1000")
    # A single write that stalls this long means the client stopped reading: slow consumer.
    send_timeout_s: float = _float("TASKSYNC_SEND_TIMEOUT_SECONDS", "10")
    gap_hold_s: float = _float("TASKSYNC_GAP_HOLD_SECONDS", "0.5")
    ack_interval_s: float = _float("TASKSYNC_ACK_INTERVAL_SECONDS", "0.5")
    lease_s: float = _float("TASKSYNC_LEASE_SECONDS", "15")
    handshake_timeout_s: float = _float("TASKSYNC_HANDSHAKE_TIMEOUT_SECONDS", "10")
    # Slow loris: every HTTP request head (request line + headers, also a WebSocket upgrade)
    # must be complete within this time and size, else 408 / 431 and the socket is closed.
    header_timeout_s: float = _float("TASKSYNC_HEADER_TIMEOUT_SECONDS", "10")
    max_header_bytes: int = _int("TASKSYNC_MAX_HEADER_BYTES", "32768")
    max_frame_bytes: int = _int("TASKSYNC_MAX_FRAME_BYTES", "16384")
    max_filter_items: int = _int("TASKSYNC_MAX_FILTER_ITEMS", "256")
    rate_per_s: float = _float("TASKSYNC_RATE_PER_SECOND", "20")
    rate_burst: int = _int("TASKSYNC_RATE_BURST", "40")
    # Empty = same-origin or no Origin header only (see docs/security.md).
    allowed_origins: tuple[str, ...] = field(
        default_factory=lambda: _csv("TASKSYNC_ALLOWED_ORIGINS")
    )

    # Where other replicas reach this one for forwards (its app port; a pod IP in Kubernetes).
    advertise_url: str = field(
        default_factory=lambda: _env(
            "TASKSYNC_ADVERTISE_URL", f"http://127.0.0.1:{_env('APP_PORT', '8001')}"
        )
    )
    app_api_token: str | None = field(default_factory=lambda: os.environ.get("APP_API_TOKEN"))
    # The pub/sub Redis, to trim consumed stream entries (gateway/stream_trim.py); unset = off.
    stream_redis_url: str = field(default_factory=lambda: _env("TASKSYNC_STREAM_REDIS_URL", ""))
    stream_trim_s: float = _float("TASKSYNC_STREAM_TRIM_SECONDS", "2")

    @property
    def dapr_url(self) -> str:
        return f"http://127.0.0.1:{self.dapr_http_port}"

