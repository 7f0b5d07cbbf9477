import pytest

from actors import presence_core as pc


def state(**users: dict[str, float]) -> pc.PresenceState:
    return pc.PresenceState(users={u: dict(r) for u, r in users.items()})


@pytest.mark.parametrize(
    ("start", "op", "now", "expected"),
    [
        pytest.param(state(), ("join", "gw-a", ["u1", "u2"]), 0, ["u1", "u2"], id="join-adds"),
        pytest.param(
            state(u1={"gw-a": 5}), ("join", "gw-b", ["u1"]), 0, ["u1"], id="join-second-replica"
        ),
        pytest.param(state(u1={"gw-a": 5}), ("leave", "gw-a", ["u1"]), 0, [], id="leave-removes"),
        pytest.param(
            state(u1={"gw-a": 5, "gw-b": 5}),
            ("leave", "gw-a", ["u1"]),
            0,
            ["u1"],
            id="leave-keeps-other-replica",
        ),
        pytest.param(
            state(u1={"gw-a": 5}),
            ("join", "gw-a", ["u2"]),
            0,
            ["u1", "u2"],
            id="renewal-never-removes-a-concurrent-join",
        ),
        pytest.param(
            state(u1={"gw-a": 5}), ("list", "", []), 6, [], id="lease-expiry-no-cleanup-call"
        ),
        pytest.param(state(u1={"gw-a": 5}), ("list", "", []), 4, ["u1"], id="lease-still-live"),
    ],
)
def test_presence_rules(
    start: pc.PresenceState, op: tuple[str, str, list[str]], now: float, expected: list[str]
) -> None:
    kind, replica, users = op
    if kind == "join":
        pc.join(start, replica, users, now, lease=10)
    elif kind == "leave":
        pc.leave(start, replica, users, now)
    assert pc.live_users(start, now) == expected


def test_shard_is_stable_and_bounded() -> None:
    shards = {pc.shard_of(f"user-{i}") for i in range(500)}
    assert shards == {f"shard-{k}" for k in range(pc.SHARDS)}
    assert pc.shard_of("alice") == pc.shard_of("alice")


def test_wire_round_trip() -> None:
    s = state(u1={"gw-a": 5.5})
    assert pc.PresenceState.from_wire(s.to_wire()) == s
