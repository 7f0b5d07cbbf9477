"""Log lines of every app (vocab/logsetup.py): JSON lines parse and carry the context fields,
text lines stay readable, and no token survives in either, wherever it hides."""

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from vocab import logsetup

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    # Other tests build uvicorn.Config, which gives uvicorn's loggers their own handlers; the apps
    # start uvicorn with log_config=None, so its lines propagate to the root handler: as here.
    uv = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.access")]
    uv_state = [(x.propagate, list(x.handlers), x.disabled, x.level) for x in uv]
    for x in uv:
        x.propagate, x.handlers, x.disabled = True, [], False
        x.setLevel(logging.INFO)
    out = io.StringIO()
    handler = logsetup.configure("gateway", "INFO", "json", replica="gw-a", stream=out)
    try:
        yield out, handler
    finally:
        root.removeHandler(handler)
        for h in saved:
            root.addHandler(h)
        root.setLevel(level)
        for x, (propagate, handlers, disabled, lvl) in zip(uv, uv_state, strict=True):
            x.propagate, x.handlers, x.disabled = propagate, handlers, disabled
            x.setLevel(lvl)
        logsetup.bind(user=None, conn=None, event=None)


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in out.getvalue().splitlines()]


def test_access_log_with_token_in_the_url_comes_out_redacted(capture) -> None:
    out, _ = capture
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET",
        f"/sse?device=d&token={JWT}&since=e:1", "1.1", 200)
    (line,) = lines(out)
    assert JWT not in out.getvalue()
    assert line["message"] == (
        '1.2.3.4:5 - "GET /sse?device=d&token=[redacted]&since=e:1 HTTP/1.1" 200')
    assert line["logger"] == "uvicorn.access" and line["level"] == "INFO"
    assert line["app"] == "gateway" and line["replica"] == "gw-a" and "time" in line


def test_a_jwt_anywhere_is_redacted_also_in_tracebacks_and_extras(capture) -> None:
    out, _ = capture
    log = logging.getLogger("gateway.test")
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        log.exception("failed", extra={"note": f"Bearer {JWT}"})
    log.warning("url %s", f"ws://h/ws?access_token={JWT[:20]}")
    text = out.getvalue()
    assert JWT not in text and JWT[:20] not in text
    first, second = lines(out)
    assert "[redacted-jwt]" in first["exc_info"] and first["note"] == "Bearer [redacted-jwt]"
    assert second["message"] == "url ws://h/ws?access_token=[redacted]"


async def test_context_fields_come_from_bind_and_extra_wins(capture) -> None:
    out, _ = capture
    log = logging.getLogger("gateway.ws")

    async def connection() -> None:
        logsetup.bind(user="alice", conn="gw-a.123")
        await asyncio.sleep(0)
        log.info("closing")
        log.warning("stale", extra={"event": "ev-1", "user": "bob"})

    await asyncio.create_task(connection())
    log.info("outside")  # the connection's task context did not leak here
    closing, stale, outside = lines(out)
    assert (closing["user"], closing["conn"]) == ("alice", "gw-a.123") and "event" not in closing
    assert (stale["user"], stale["conn"], stale["event"]) == ("bob", "gw-a.123", "ev-1")
    assert "user" not in outside and "conn" not in outside


def test_text_format_is_readable_and_redacted() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "GET %s",
                               (f"/ws?token={JWT}",), None)
    for f in (logsetup.RedactTokens(), logsetup.ContextFields("gateway", "gw-b")):
        f.filter(record)
    record.user = "carol"
    line = logsetup.TextLines().format(record)
    assert line.endswith("INFO uvicorn.access GET /ws?token=[redacted] [replica=gw-b user=carol]")


def test_format_is_json_or_text(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="TASKSYNC_LOG_FORMAT"):
        logsetup.formatter("xml")
    monkeypatch.setenv("TASKSYNC_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match=r"TASKSYNC_LOG_FORMAT|log_format"):
        Settings(replica_id="gw-a")
    monkeypatch.setenv("TASKSYNC_LOG_FORMAT", "text")
    assert Settings(replica_id="gw-a").log_format == "text"
    monkeypatch.delenv("TASKSYNC_LOG_FORMAT")
    assert Settings(replica_id="gw-a").log_format == "json"
