"""Gateway settings refuse bad values with the variable's name instead of running oddly."""

import pytest

from gateway.config import Settings, load_or_exit


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"TASKSYNC_SEND_QUEUE_MAX": "0"}, "TASKSYNC_SEND_QUEUE_MAX"),  # once: unbounded queue
        ({"TASKSYNC_HEARTBEAT_SECONDS": "-1"}, "TASKSYNC_HEARTBEAT_SECONDS"),
        ({"TASKSYNC_HEARTBEAT_SECONDS": "soon"}, "TASKSYNC_HEARTBEAT_SECONDS"),
        ({"TASKSYNC_LEASE_SECONDS": "0"}, "TASKSYNC_LEASE_SECONDS"),
        ({"APP_PORT": "70000"}, "APP_PORT"),
        ({"TASKSYNC_REPLICA_ID": "bad id!"}, "TASKSYNC_REPLICA_ID"),
        ({"TASKSYNC_ADVERTISE_URL": "10.0.0.1:8001"}, "TASKSYNC_ADVERTISE_URL"),
        ({"TASKSYNC_HEARTBEAT_SECONDS": "30", "TASKSYNC_HEARTBEAT_TIMEOUT_SECONDS": "20"},
         "TASKSYNC_HEARTBEAT_TIMEOUT_SECONDS"),
    ],
)
def test_bad_values_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as exc:
        load_or_exit()
    assert name in str(exc.value)


def test_environment_is_read_and_lists_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKSYNC_REPLICA_ID", "gw-z")
    monkeypatch.setenv("TASKSYNC_ALLOWED_ORIGINS", "https://a.example, https://b.example,")
    monkeypatch.setenv("APP_PORT", "9100")
    s = Settings()
    assert s.replica_id == "gw-z"
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert s.advertise_url == "http://127.0.0.1:9100"
    assert Settings(replica_id="x").replica_id == "x"  # code and tests may pass fields


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"TASKSYNC_RETENTION_EVENTS": "0"}, "TASKSYNC_RETENTION_EVENTS"),
        ({"TASKSYNC_ORDER_HOLD_SECONDS": "30"}, "TASKSYNC_ORDER_HOLD_SECONDS"),
        ({"TASKSYNC_MAX_CONNECTIONS_PER_USER": "many"}, "TASKSYNC_MAX_CONNECTIONS_PER_USER"),
    ],
)
def test_sessions_host_refuses_bad_values(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str
) -> None:
    from actors.settings import load_or_exit as load_sessions

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as exc:
        load_sessions()
    assert name in str(exc.value)


def test_sessions_host_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.settings import SessionSettings

    monkeypatch.setenv("TASKSYNC_RETENTION_EVENTS", "200")
    monkeypatch.setenv("TASKSYNC_ORDER_HOLD_SECONDS", "0.25")
    limits = SessionSettings().limits()
    assert (limits.max_events, limits.hold_s) == (200, 0.25)
