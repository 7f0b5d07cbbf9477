import pytest

from actors.fast_dispatch import actor_call
from gateway.ratelimit import TokenBucket
from vocab.dapr_trust import token_ok


def test_bucket_allows_burst_then_refills() -> None:
    b = TokenBucket(rate_per_s=2, burst=3)
    assert [b.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.allow(0.5) is True  # one token back after 0.5 s at 2/s
    assert b.allow(0.5) is False


@pytest.mark.parametrize(
    ("expected", "presented", "ok"),
    [
        pytest.param("s3cret", b"s3cret", True, id="match"),
        pytest.param("s3cret", b"s3creT", False, id="mismatch"),
        pytest.param("s3cret", None, False, id="missing"),
        pytest.param("s3cret", b"", False, id="empty"),
        pytest.param(None, None, True, id="unconfigured-dev"),
    ],
)
def test_app_token_check(expected: str | None, presented: bytes | None, ok: bool) -> None:
    assert token_ok(expected, presented) is ok


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/actors/UserSession/u1/method/deliver", ("UserSession", "u1", "deliver")),
        ("/actors/UserSession/a@b:c/method/attach", ("UserSession", "a@b:c", "attach")),
        ("/actors/UserSession/u1/method/timer/t1", None),  # timers go through the SDK route
        ("/actors/UserSession/u1/method/", None),
        ("/actors/UserSession//method/deliver", None),
        ("/actors/UserSession/u1/state/deliver", None),
        ("/dapr/config", None),
    ],
)
def test_actor_fast_path_matches_only_method_calls(
    path: str, expected: tuple[str, str, str] | None
) -> None:
    assert actor_call(path) == expected
