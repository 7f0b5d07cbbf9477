"""Hostile `sub` claims (test_auth.py has the signature/algorithm/claim table; this adds the
user-id charset). The sub becomes the actor id, a log field and what topic audiences name."""

from __future__ import annotations

import time

import jwt
import pytest

from gateway.auth import AuthConfig, AuthError, verify
from gateway.topic_schema import USER_ID_RE

SECRET = "unit-secret-unit-secret-unit-secret"
HS = AuthConfig(hs_secret=SECRET)


def tok(sub: object) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")


REFUSED = [
    ("dot", "."),  # an URL path segment: the actor call goes elsewhere (daprd 4xx)
    ("dot-dot", ".."),
    ("path-traversal", "../victim"),
    ("slash", "victim/method/deliver"),
    ("query", "a?b"),
    ("fragment", "a#b"),
    ("percent-escape", "victim%2Fx"),
    ("backslash", "a\\b"),
    ("newline-log-injection", "alice\n2024-01-01 INFO gateway forged line"),
    ("carriage-return", "alice\r"),
    ("nul", "a\x00b"),
    ("space", "a b"),
    ("rtl-override", "\u202ealice"),
    ("zero-width-space", "alice\u200b"),
    ("cyrillic-homoglyph", "\u0430lice"),
    ("fullwidth", "\uff41lice"),
    ("pipe-separator", "victim||ev:1"),
    ("wildcard", "*"),
    ("129-chars", "u" * 129),
]


@pytest.mark.parametrize("sub", [r[1] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_unusable_sub_is_unauthorized(sub: str) -> None:
    with pytest.raises(AuthError) as ei:
        verify(HS, tok(sub))
    assert ei.value.code == "unauthorized"


ACCEPTED = ["alice", "a", "u" * 128, "alice@example.com", "tenant:42", "a-b_c.d", "...",
            "550e8400-e29b-41d4-a716-446655440000"]


@pytest.mark.parametrize("sub", ACCEPTED)
def test_user_id_charset_is_accepted(sub: str) -> None:
    assert verify(HS, tok(sub)).user == sub
    assert USER_ID_RE.fullmatch(sub)  # so a topic audience can name this user
