"""Logging for every app: JSON lines (python-json-logger) or human-readable text, one handler on
the root logger, the same fields and the same redaction either way.

- `TASKSYNC_LOG_FORMAT=json|text` (default json; the local run command sets text unless the
  variable is already set, see docs/operations.md, Logs).
- Each line carries `app` and `replica`, and `user`, `conn` and `event` where they apply: from
  `extra={...}` on the call, else from the context variables the transports set for the tasks
  of one connection (`bind(user=..., conn=...)`).
- No token ever reaches a line: query-string tokens (`token=`, `access_token=`) and anything
  shaped like a JWT are redacted from the rendered line itself, so a token inside an exception
  text or an extra field is caught too. Payloads are never passed to a log call (event ids
  only), so none is logged.

A leaf module of vocab/ (no project imports); clients do not import it.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FORMAT_ENV = "TASKSYNC_LOG_FORMAT"
FIELDS = ("user", "conn", "event")
_VARS: dict[str, contextvars.ContextVar[str | None]] = {
    f: contextvars.ContextVar(f"tasksync_log_{f}", default=None) for f in FIELDS
}

_TOKEN_IN_URL = re.compile(r"([?&](?:access_)?token=)[^&\s\"'\\]*", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def redact(text: str) -> str:
    if "token=" in text.lower():
        text = _TOKEN_IN_URL.sub(r"\1[redacted]", text)
    if "eyJ" in text:
        text = _JWT.sub("[redacted-jwt]", text)
    return text


def bind(**fields: str | None) -> None:
    """Set context fields (user, conn, event) for the current task and the tasks it creates
    afterwards (asyncio copies the context into each new task)."""
    for name, value in fields.items():
        _VARS[name].set(value)


class RedactTokens(logging.Filter):
    """Browsers' EventSource can't send headers, so `?token=<jwt>` is legal; uvicorn logs every
    request path with its query string. Bearer tokens must not end up in log files."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Arguments are redacted one by one: uvicorn's access formatter unpacks the args tuple.
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif not record.args and isinstance(record.msg, str):  # never edit a format string
            record.msg = redact(record.msg)
        return True


class ContextFields(logging.Filter):
    """Adds app, replica and the bound context fields to every record (extra= wins)."""

    def __init__(self, app: str, replica: str | None) -> None:
        super().__init__()
        self.app, self.replica = app, replica

    def filter(self, record: logging.LogRecord) -> bool:
        record.app = self.app
        if self.replica:
            record.replica = self.replica
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                value = var.get()
                if value is not None:
                    setattr(record, name, value)
        return True


class JsonLines(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class TextLines(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = " ".join(f"{f}={getattr(record, f)}" for f in ("replica", *FIELDS)
                       if getattr(record, f, None) is not None)
        return redact(f"{line} [{ctx}]" if ctx else line)


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonLines()
    if fmt == "text":
        return TextLines()
    raise SystemExit(f"{FORMAT_ENV} must be json or text, got {fmt!r}")


def configure(app: str, level: str | None = None, fmt: str | None = None,
              replica: str | None = None, stream: Any = None) -> logging.Handler:
    """One handler on the root logger; uvicorn's loggers propagate to it (start uvicorn with
    log_config=None so it installs none of its own)."""
    env = os.environ.get
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter((fmt or env(FORMAT_ENV) or "json").strip().lower()))
    handler.addFilter(RedactTokens())
    handler.addFilter(ContextFields(app, replica or env("TASKSYNC_REPLICA_ID")))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or env("LOG_LEVEL") or "INFO").upper())
    return handler
