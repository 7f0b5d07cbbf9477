"""Sessions host settings: one validated model, read once from the environment (names in
docs/operations.md). A bad value refuses to start with the variable's name."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from actors.session_types import Limits
from vocab.settings_load import load_or_exit as load_settings


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class SessionSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore",
                                      case_sensitive=True)

    bind: str = Field("127.0.0.1", validation_alias=_env("TASKSYNC_BIND"))
    app_port: int = Field(7100, ge=1, le=65535, validation_alias=_env("APP_PORT"))
    log_level: str = Field("info", validation_alias=_env("LOG_LEVEL"))
    retention_events: int = Field(1000, ge=1, validation_alias=_env("TASKSYNC_RETENTION_EVENTS"))
    retention_s: float = Field(86400.0, gt=0,
                               validation_alias=_env("TASKSYNC_RETENTION_SECONDS"))
    max_connections: int = Field(16, ge=1,
                                 validation_alias=_env("TASKSYNC_MAX_CONNECTIONS_PER_USER"))
    lease_s: float = Field(15.0, ge=1, validation_alias=_env("TASKSYNC_LEASE_SECONDS"))
    order_hold_s: float = Field(0.5, ge=0, le=10,
                                validation_alias=_env("TASKSYNC_ORDER_HOLD_SECONDS"))
    order_max_tasks: int = Field(4096, ge=1, validation_alias=_env("TASKSYNC_ORDER_MAX_TASKS"))

    def limits(self) -> Limits:
        return Limits(max_events=self.retention_events, max_age_s=self.retention_s,
                      max_connections=self.max_connections, lease_s=self.lease_s,
                      hold_s=self.order_hold_s, max_tasks=self.order_max_tasks)


def load_or_exit() -> SessionSettings:
    return load_settings(SessionSettings, "sessions host")
