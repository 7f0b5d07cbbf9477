"""Close-code decisions of the Python client, checked against the catalogue in the docs."""

import re
from pathlib import Path

import pytest

from clients.pyclient.closecodes import (
    Decision,
    code_for_name,
    decide,
    is_ws_connect_failure,
    name_for_code,
)
from gateway.protocol import CLOSE_CODES

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

BACKOFF = Decision(reconnect=True)
STOP = Decision(reconnect=False)

# (code, reached welcome, decision). None = the transport failed without a close code.
CASES: list[tuple[int | None, bool, Decision]] = [
    (1000, True, STOP),
    (4001, False, STOP),
    (4001, True, STOP),
    (4003, False, STOP),
    (1009, True, BACKOFF),
    (4002, True, Decision(reconnect=True, refresh_token=True)),
    (4002, False, Decision(reconnect=True, refresh_token=True)),
    (4004, True, BACKOFF),
    (4008, True, BACKOFF),
    (4009, False, BACKOFF),
    (4010, True, Decision(reconnect=True, immediate=True)),
    (4011, True, Decision(reconnect=True, immediate=True, rotate=True)),
    (4011, False, Decision(reconnect=True, immediate=True, rotate=True)),
    (4012, True, BACKOFF),
    (4013, False, BACKOFF),
    (4500, True, BACKOFF),
    (4503, False, BACKOFF),
    (None, True, BACKOFF),  # a healthy link dropped: same replica, with backoff
    (None, False, Decision(reconnect=True, rotate=True)),  # never connected: next replica
    (1006, True, BACKOFF),
    (1006, False, Decision(reconnect=True, rotate=True)),
    (1001, True, Decision(reconnect=True, rotate=True)),  # plain "going away"
    (1011, True, BACKOFF),
]


@pytest.mark.parametrize(("code", "welcomed", "expected"), CASES)
def test_decide(code: int | None, welcomed: bool, expected: Decision) -> None:
    assert decide(code, welcomed) == expected


def test_own_welcome_timeout_moves_to_the_next_replica() -> None:
    # A replica that accepts but never welcomes (hung, or behind a load balancer) must not be
    # retried forever: our local 4013 rotates, a server-sent 4013 does not.
    assert decide(4013, welcomed=False, local=True) == Decision(reconnect=True, rotate=True)
    assert decide(4013, welcomed=False, local=False) == BACKOFF


def test_every_catalogue_code_is_decided_as_the_docs_say() -> None:
    rows = re.findall(r"^\| (\d{4}) \| (\w+) \| (yes|no) \|", DOC.read_text(), re.M)
    assert {int(c) for c, _, _ in rows} == set(CLOSE_CODES)
    for code, name, reconnect in rows:
        assert decide(int(code), welcomed=True).reconnect is (reconnect == "yes"), code
        assert name_for_code(int(code)) == name


@pytest.mark.parametrize(
    ("name", "code"),
    [("slow_consumer", 4010), ("server_shutdown", 4011), ("token_expired", 4002),
     ("unauthorized", 4001), ("unavailable", 4503), ("rate_limited", 4008),
     ("normal", None),  # never a reason to stop: SSE streams end silently instead
     ("bad_field", None), ("nonsense", None)],
)
def test_sse_error_names_map_to_close_codes(name: str, code: int | None) -> None:
    assert code_for_name(name) == code


# (code, welcomed, opened, local) -> counts towards the SSE fallback?
FAILURES: list[tuple[int | None, bool, bool, bool, bool]] = [
    (None, False, False, False, True),  # refused, 404/403 handshake, DNS, timeout
    (1006, False, True, False, True),  # opened, then dropped without a close frame
    (4013, False, True, True, True),  # our own welcome timeout
    (4012, False, True, True, False),  # local, but not a handshake problem
    (4503, False, True, False, False),  # the server answered with a catalogue code
    (4001, False, True, False, False),
    (None, True, True, False, False),  # it worked once: not a path problem
    (4011, True, True, False, False),
]


@pytest.mark.parametrize(("code", "welcomed", "opened", "local", "counts"), FAILURES)
def test_ws_connect_failure(
    code: int | None, welcomed: bool, opened: bool, local: bool, counts: bool
) -> None:
    assert is_ws_connect_failure(code, welcomed, opened, local) is counts
