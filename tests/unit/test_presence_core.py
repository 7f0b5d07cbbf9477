import pytest

from actors import presence_core as pc
from actors.session_core import Liveness


def state(**users: dict[str, float]) -> pc.PresenceState:
    return pc.PresenceState(users={u: dict(r) for u, r in users.items()})


LIVE_AB = Liveness(frozenset({"gw-a", "gw-b"}), 100.0)
LIVE_B = Liveness(frozenset({"gw-b"}), 100.0)


@pytest.mark.parametrize(
    ("start", "op", "live", "expected"),
    [
        pytest.param(state(), ("join", "gw-a", ["u1", "u2"]), LIVE_AB, ["u1", "u2"],
                     id="join-adds"),
        pytest.param(state(u1={"gw-a": 5}), ("join", "gw-b", ["u1"]), LIVE_AB, ["u1"],
                     id="join-second-replica"),
        pytest.param(state(u1={"gw-a": 5}), ("leave", "gw-a", ["u1"]), LIVE_AB, [],
                     id="leave-removes"),
        pytest.param(state(u1={"gw-a": 5, "gw-b": 5}), ("leave", "gw-a", ["u1"]), LIVE_AB,
                     ["u1"], id="leave-keeps-other-replica"),
        pytest.param(state(u1={"gw-a": 5}), ("leave", "gw-b", ["u9"]), LIVE_AB, ["u1"],
                     id="leave-unknown-is-ignored"),
        pytest.param(state(u1={"gw-a": 5}), ("none", "", []), LIVE_B, [],
                     id="dead-replica-drops-out-without-a-call"),
        pytest.param(state(u1={"gw-a": 99}), ("none", "", []), LIVE_B, ["u1"],
                     id="joined-within-grace-of-the-snapshot-stays"),
        pytest.param(state(u1={"gw-a": 5, "gw-b": 5}), ("none", "", []), LIVE_B, ["u1"],
                     id="alive-on-another-replica"),
    ],
)
def test_presence_rules(
    start: pc.PresenceState, op: tuple[str, str, list[str]], live: Liveness,
    expected: list[str],
) -> None:
    kind, replica, users = op
    if kind == "join":
        pc.join(start, replica, users, 50.0)
    elif kind == "leave":
        pc.leave(start, replica, users)
    pc.prune(start, live, grace_s=5.0)
    assert pc.users_of(start) == expected


def test_shard_is_stable_and_bounded() -> None:
    shards = {pc.shard_of(f"user-{i}") for i in range(500)}
    assert shards == {f"shard-{k}" for k in range(pc.SHARDS)}
    assert pc.shard_of("alice") == pc.shard_of("alice")


def test_wire_round_trip() -> None:
    s = state(u1={"gw-a": 5.5})
    assert pc.PresenceState.from_wire(s.to_wire()) == s


def test_corrupt_wire_is_refused() -> None:
    with pytest.raises(ValueError):
        pc.PresenceState.from_wire({"users": {"u1": {"gw-a": "soon"}}})
