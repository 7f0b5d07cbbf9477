"""Gateway settings, read once from the environment (names documented in docs/operations.md)."""

import os
import uuid
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _csv(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    return tuple(x.strip() for x in raw.split(",") if x.strip())


@dataclass(frozen=True)
class Settings:
    replica_id: str = field(
        default_factory=lambda: _env("TASKSYNC_REPLICA_ID", uuid.uuid4().hex[:8])
    )
    dapr_http_port: int = field(default_factory=lambda: int(_env("DAPR_HTTP_PORT", "3500")))
    dapr_api_token: str | None = field(default_factory=lambda: os.environ.get("DAPR_API_TOKEN"))
    pubsub: str = "pubsub"
    heartbeat_s: float = field(
        default_factory=lambda: float(_env("TASKSYNC_HEARTBEAT_SECONDS", "15"))
    )
    heartbeat_timeout_s: float = field(
        default_factory=lambda: float(_env("TASKSYNC_HEARTBEAT_TIMEOUT_SECONDS", "45"))
    )
    send_queue_max: int = field(
        default_factory=lambda: int(_env("TASKSYNC_SEND_QUEUE_MAX", "1000"))
    )
    # A single write that stalls this long means the client stopped reading: slow consumer.
    send_timeout_s: float = field(
        default_factory=lambda: float(_env("TASKSYNC_SEND_TIMEOUT_SECONDS", "10"))
    )
    gap_hold_s: float = field(
        default_factory=lambda: float(_env("TASKSYNC_GAP_HOLD_SECONDS", "0.5"))
    )
    ack_interval_s: float = field(
        default_factory=lambda: float(_env("TASKSYNC_ACK_INTERVAL_SECONDS", "0.5"))
    )
    lease_s: float = field(default_factory=lambda: float(_env("TASKSYNC_LEASE_SECONDS", "30")))
    handshake_timeout_s: float = field(
        default_factory=lambda: float(_env("TASKSYNC_HANDSHAKE_TIMEOUT_SECONDS", "10"))
    )
    # Slow loris: every HTTP request head (request line + headers, also a WebSocket upgrade)
    # must be complete within this time and size, else 408 / 431 and the socket is closed.
    header_timeout_s: float = field(
        default_factory=lambda: float(_env("TASKSYNC_HEADER_TIMEOUT_SECONDS", "10"))
    )
    max_header_bytes: int = field(
        default_factory=lambda: int(_env("TASKSYNC_MAX_HEADER_BYTES", "32768"))
    )
    max_frame_bytes: int = field(
        default_factory=lambda: int(_env("TASKSYNC_MAX_FRAME_BYTES", "16384"))
    )
    max_filter_items: int = field(
        default_factory=lambda: int(_env("TASKSYNC_MAX_FILTER_ITEMS", "256"))
    )
    rate_per_s: float = field(default_factory=lambda: float(_env("TASKSYNC_RATE_PER_SECOND", "20")))
    rate_burst: int = field(default_factory=lambda: int(_env("TASKSYNC_RATE_BURST", "40")))
    # Empty = same-origin or no Origin header only (see docs/security.md).
    allowed_origins: tuple[str, ...] = field(
        default_factory=lambda: _csv("TASKSYNC_ALLOWED_ORIGINS")
    )
    demo: bool = field(default_factory=lambda: _env("TASKSYNC_DEMO", "0") == "1")

    @property
    def dapr_url(self) -> str:
        return f"http://127.0.0.1:{self.dapr_http_port}"

    @property
    def replica_topic(self) -> str:
        return f"gateway-replica.{self.replica_id}"
