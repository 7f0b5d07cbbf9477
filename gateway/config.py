"""Gateway settings: one validated model, read once from the environment (names documented in
docs/operations.md). A bad value refuses to start with a message naming the variable, instead of
running with a silently odd value (e.g. TASKSYNC_SEND_QUEUE_MAX=0 once made the queue unbounded).
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vocab.settings_load import load_or_exit as load_settings

_ID = r"^[A-Za-z0-9_.-]{1,64}$"


def _env(name: str) -> AliasChoices:
    # The field name works too, so tests and code can build Settings(replica_id="gw-a").
    return AliasChoices(name)


def _default_advertise() -> str:
    return f"http://127.0.0.1:{os.environ.get('APP_PORT', '8001')}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore",
                                      case_sensitive=True)

    replica_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:8], pattern=_ID,
                            validation_alias=_env("TASKSYNC_REPLICA_ID"))
    bind: str = Field("127.0.0.1", validation_alias=_env("TASKSYNC_BIND"))
    app_port: int = Field(8001, ge=1, le=65535, validation_alias=_env("APP_PORT"))
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"))
    # JSON lines for collectors, text for a terminal (vocab/logsetup.py, docs/operations.md).
    log_format: Literal["json", "text"] = Field("json",
                                                validation_alias=_env("TASKSYNC_LOG_FORMAT"))
    dapr_http_port: int = Field(3500, ge=1, le=65535, validation_alias=_env("DAPR_HTTP_PORT"))
    dapr_api_token: str | None = Field(None, validation_alias=_env("DAPR_API_TOKEN"))
    app_api_token: str | None = Field(None, validation_alias=_env("APP_API_TOKEN"))
    pubsub: str = "pubsub"
    # The only per-connection timer. 25 s (Centrifugo's default ping interval): at 5,000 idle
    # connections the pings were most of the gateways' idle CPU at 15 s.
    heartbeat_s: float = Field(25.0, gt=0, validation_alias=_env("TASKSYNC_HEARTBEAT_SECONDS"))
    heartbeat_timeout_s: float = Field(
        60.0, gt=0, validation_alias=_env("TASKSYNC_HEARTBEAT_TIMEOUT_SECONDS"))
    send_queue_max: int = Field(1000, ge=2, validation_alias=_env("TASKSYNC_SEND_QUEUE_MAX"))
    # A single write that stalls this long means the client stopped reading: slow consumer.
    send_timeout_s: float = Field(10.0, gt=0,
                                  validation_alias=_env("TASKSYNC_SEND_TIMEOUT_SECONDS"))
    gap_hold_s: float = Field(0.5, ge=0, le=30, validation_alias=_env("TASKSYNC_GAP_HOLD_SECONDS"))
    # A connection quiet this long after an event is checked once against the log's head (a lost
    # last forward is filled); 0 turns the check off.
    tail_check_s: float = Field(5.0, ge=0, validation_alias=_env("TASKSYNC_TAIL_CHECK_SECONDS"))
    # Coalescing window: one actor write per connection per window, however many acks.
    ack_interval_s: float = Field(2.0, gt=0,
                                  validation_alias=_env("TASKSYNC_ACK_INTERVAL_SECONDS"))
    # The registry lease of this replica, renewed every lease/3.
    lease_s: float = Field(15.0, ge=1, validation_alias=_env("TASKSYNC_LEASE_SECONDS"))
    handshake_timeout_s: float = Field(
        10.0, gt=0, validation_alias=_env("TASKSYNC_HANDSHAKE_TIMEOUT_SECONDS"))
    # Slow loris: every HTTP request head (request line + headers, also a WebSocket upgrade)
    # must be complete within this time and size, else 408 / 431 and the socket is closed.
    header_timeout_s: float = Field(10.0, gt=0,
                                    validation_alias=_env("TASKSYNC_HEADER_TIMEOUT_SECONDS"))
    max_header_bytes: int = Field(32768, ge=1024,
                                  validation_alias=_env("TASKSYNC_MAX_HEADER_BYTES"))
    max_frame_bytes: int = Field(16384, ge=256, validation_alias=_env("TASKSYNC_MAX_FRAME_BYTES"))
    max_filter_items: int = Field(256, ge=1, validation_alias=_env("TASKSYNC_MAX_FILTER_ITEMS"))
    rate_per_s: float = Field(20.0, gt=0, validation_alias=_env("TASKSYNC_RATE_PER_SECOND"))
    rate_burst: int = Field(40, ge=1, validation_alias=_env("TASKSYNC_RATE_BURST"))
    # Empty = same-origin or no Origin header only (see docs/security.md).
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("TASKSYNC_ALLOWED_ORIGINS"))
    # Where other replicas reach this one for forwards (its app port; a pod IP in Kubernetes).
    advertise_url: str = Field(default_factory=_default_advertise, pattern=r"^[a-z]+://",
                               validation_alias=_env("TASKSYNC_ADVERTISE_URL"))
    # The pub/sub Redis, to trim consumed stream entries (gateway/stream_trim.py); unset = off.
    stream_redis_url: str = Field("", validation_alias=_env("TASKSYNC_STREAM_REDIS_URL"))
    stream_trim_s: float = Field(2.0, gt=0, validation_alias=_env("TASKSYNC_STREAM_TRIM_SECONDS"))
    # OTLP/HTTP base URL (e.g. http://127.0.0.1:4318) for the gateway's spans (gateway/tracing.py);
    # empty = tracing off, and the SDK is never imported.
    tracing_endpoint: str = Field("", pattern=r"^(https?://.+)?$",
                                  validation_alias=_env("TASKSYNC_TRACING_ENDPOINT"))
    # The operator API (gateway/admin.py); unset or empty = /admin/ refuses everything.
    admin_token: str | None = Field(None, validation_alias=_env("TASKSYNC_ADMIN_TOKEN"))

    @field_validator("admin_token", mode="after")
    @classmethod
    def _admin_token(cls, v: str | None) -> str | None:
        if v and len(v) < 16:
            raise ValueError("TASKSYNC_ADMIN_TOKEN must have at least 16 characters")
        return v or None

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _csv(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(x.strip() for x in v.split(",") if x.strip())
        return v

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.heartbeat_timeout_s <= self.heartbeat_s:
            raise ValueError("TASKSYNC_HEARTBEAT_TIMEOUT_SECONDS must exceed "
                             "TASKSYNC_HEARTBEAT_SECONDS (a client needs a ping to answer)")
        return self

    @property
    def dapr_url(self) -> str:
        return f"http://127.0.0.1:{self.dapr_http_port}"


def load_or_exit() -> Settings:
    """Settings for a process entry point: a clear message and a non-zero exit on a bad value."""
    return load_settings(Settings, "gateway")
