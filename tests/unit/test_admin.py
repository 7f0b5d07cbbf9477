"""The operator API's rules without processes: refused entirely without TASKSYNC_ADMIN_TOKEN,
the token compared as a bearer, close codes only from the catalogue, no payload in the session
view; the CLI's requests and test events."""

import argparse
from pathlib import Path

import httpx
import pytest
from fastapi import HTTPException

from gateway import admin_cli
from gateway.admin import close_code, session_view
from gateway.app import create_app
from gateway.auth import AuthConfig
from gateway.config import Settings

TOKEN = "unit-admin-token-0123456789"


async def call(settings: Settings, method: str, path: str, headers: dict[str, str]) -> int:
    app = create_app(settings, AuthConfig(hs_secret="unit-test-secret-0123456789abcdef"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
        return (await c.request(method, path, headers=headers, json={"code": 4011})).status_code


@pytest.mark.parametrize("path", ["/admin/replicas", "/admin/local/status",
                                  "/admin/users/alice/session", "/admin/local/connections"])
async def test_unset_token_refuses_everything(path: str) -> None:
    settings = Settings(replica_id="gw-u", admin_token=None)
    assert await call(settings, "GET", path, {"authorization": "Bearer "}) == 403
    assert await call(settings, "GET", path, {}) == 403


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="none"),
        pytest.param({"authorization": "Bearer nope"}, 401, id="wrong"),
        pytest.param({"authorization": TOKEN}, 401, id="no-scheme"),
        pytest.param({"dapr-api-token": TOKEN}, 401, id="dapr-header"),
        pytest.param({"authorization": f"Bearer {TOKEN}"}, 200, id="bearer"),
        pytest.param({"authorization": f"bearer {TOKEN}"}, 200, id="scheme-case"),
    ],
)
async def test_admin_token_is_a_bearer(headers: dict[str, str], status: int) -> None:
    settings = Settings(replica_id="gw-t", admin_token=TOKEN)
    assert await call(settings, "GET", "/admin/local/status", headers) == status


async def test_admin_does_not_open_internal_routes() -> None:
    settings = Settings(replica_id="gw-t", admin_token=TOKEN, app_api_token="app-token-0123")
    assert await call(settings, "GET", "/internal/stats",
                      {"authorization": f"Bearer {TOKEN}"}) == 403


def test_short_admin_token_is_refused_and_empty_is_unset() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        Settings(replica_id="gw-t", admin_token="short")
    assert Settings(replica_id="gw-t", admin_token="").admin_token is None


@pytest.mark.parametrize(("value", "code"), [(4011, 4011), ("4010", 4010),
                                             ("server_shutdown", 4011), ("normal", 1000)])
def test_close_codes_by_number_or_name(value: object, code: int) -> None:
    assert close_code(value).code == code


@pytest.mark.parametrize("value", [4999, "nope", None, True, 4011.0, "", "-1"])
def test_codes_outside_the_catalogue_are_refused(value: object) -> None:
    with pytest.raises(HTTPException) as e:
        close_code(value)
    assert e.value.status_code == 400


def test_session_view_keeps_positions_and_drops_payloads() -> None:
    answer = {
        "meta": {
            "v": 1, "epoch": "ep", "head": 7, "tail": 5, "stamps": [1.0, 2.0, 3.0],
            "seen": [["e5", 5], ["e6", 6], ["e7", 7]],
            "devices": {"phone": {"seq": 6, "seen_at": 2.0}},
            "conns": {"gw-a.1": {"replica": "gw-a", "device": "phone", "since": 1.0},
                      "gw-b.2": {"replica": "gw-b", "device": "laptop", "since": 1.5}},
            "filters": {"types": ["task_updated"]},
            "order": {"stale": 2, "tick": 9, "held": 1, "tasks": [["t1", 3, False, 9]],
                      "held_events": [["e9", "t1", "task_updated", 5, 4.0,
                                       {"id": "e9", "data": {"title": "SECRET"}}]]},
        },
        "limits": {"max_events": 1000, "max_age_s": 86400.0, "max_connections": 16},
    }
    view = session_view("alice", answer)
    assert "SECRET" not in repr(view)
    assert (view["epoch"], view["head"], view["tail"], view["retained"]) == ("ep", 7, 5, 3)
    assert view["retention"] == {"max_events": 1000, "max_age_s": 86400.0}
    assert view["connections_per_replica"] == {"gw-a": 1, "gw-b": 1}
    assert view["order"] == {"stale": 2, "tasks_tracked": 1,
                             "held_events": [["e9", "t1", "task_updated", 5, 4.0]]}
    assert view["devices"] == {"phone": {"seq": 6, "seen_at": 2.0}} and view["dedup_ids"] == 3


def ns(argv: list[str]) -> argparse.Namespace:
    return admin_cli.parser().parse_args(argv)


def test_cli_requests() -> None:
    assert admin_cli.admin_request(ns(["replicas"])) == ("GET", "/admin/replicas", None)
    assert admin_cli.admin_request(ns(["session", "a@b:c"])) == (
        "GET", "/admin/users/a%40b%3Ac/session", None)
    assert admin_cli.admin_request(ns(["disconnect", "bob", "--code", "4011"])) == (
        "POST", "/admin/users/bob/disconnect", {"code": 4011, "conn": None})
    assert admin_cli.admin_request(ns(["disconnect", "bob", "--code", "slow_consumer",
                                       "--conn", "gw-a.1"]))[2] == {"code": "slow_consumer",
                                                                     "conn": "gw-a.1"}
    assert admin_cli.admin_request(ns(["drain", "gw-b"])) == (
        "POST", "/admin/replicas/gw-b/drain", None)


def test_cli_test_event_follows_the_topic_schema() -> None:
    body = admin_cli.event_body(ns(["publish", "--task", "7", "--audience", "alice, bob",
                                    "--data", '{"title": "x"}', "--version", "3"]))
    assert body["type"] == "task_updated" and body["data"] == {"title": "x", "id": 7}
    assert body["audience"] == ["alice", "bob"] and body["version"] == 3
    assert isinstance(body["ts"], float) and len(body["event_id"]) == 32


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "admin.env"
    f.write_text("# comment\nTASKSYNC_ADMIN_URL=http://h:1\nTASKSYNC_ADMIN_TOKEN=abc=def\n")
    monkeypatch.delenv("TASKSYNC_ADMIN_TOKEN", raising=False)
    assert admin_cli.setting("TASKSYNC_ADMIN_TOKEN", None, f) == "abc=def"
    assert admin_cli.setting("TASKSYNC_ADMIN_TOKEN", "given", f) == "given"
    monkeypatch.setenv("TASKSYNC_ADMIN_TOKEN", "from-env")
    assert admin_cli.setting("TASKSYNC_ADMIN_TOKEN", None, f) == "from-env"
    assert admin_cli.read_env_file(tmp_path / "missing") == {}
