"""JWT verification with PyJWT. The user id is the verified token's `sub`, nothing else.

Keys are tied to algorithm families so a token can never pick its own verification method:
HS256 only with the shared secret, RS256/ES256 only with the public key or JWKS. `alg: none`
is never accepted.
"""

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK

from vocab.ids import USER_ID_RE

ASYMMETRIC = ("RS256", "ES256")
SUB_MAX = 128


class AuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # "unauthorized" | "token_expired"
        self.message = message


@dataclass(frozen=True)
class Identity:
    user: str
    expires_at: float


@dataclass(frozen=True)
class AuthConfig:
    hs_secret: str | None = None
    public_key_pem: str | None = None
    jwks: dict[str, Any] | None = None
    issuer: str | None = None
    audience: str | None = None

    @staticmethod
    def from_env() -> "AuthConfig":
        env = os.environ.get
        pem = None
        if path := env("TASKSYNC_JWT_PUBLIC_KEY_FILE"):
            with open(path, encoding="utf-8") as f:
                pem = f.read()
        jwks = None
        if path := env("TASKSYNC_JWT_JWKS_FILE"):
            with open(path, encoding="utf-8") as f:
                jwks = json.load(f)
        cfg = AuthConfig(
            hs_secret=env("TASKSYNC_JWT_SECRET") or None,
            public_key_pem=pem,
            jwks=jwks,
            issuer=env("TASKSYNC_JWT_ISSUER") or None,
            audience=env("TASKSYNC_JWT_AUDIENCE") or None,
        )
        if not (cfg.hs_secret or cfg.public_key_pem or cfg.jwks):
            raise RuntimeError(
                "no JWT key configured: set TASKSYNC_JWT_SECRET (HS256) or "
                "TASKSYNC_JWT_PUBLIC_KEY_FILE / TASKSYNC_JWT_JWKS_FILE (RS256/ES256)"
            )
        return cfg


def _key_for(cfg: AuthConfig, header: dict[str, Any]) -> Any:
    alg = header.get("alg")
    if alg == "HS256" and cfg.hs_secret:
        return cfg.hs_secret
    if alg in ASYMMETRIC:
        if cfg.jwks is not None:
            kid = header.get("kid")
            for jwk in cfg.jwks.get("keys", []):
                if jwk.get("kid") == kid and jwk.get("alg", alg) == alg:
                    return PyJWK(jwk, algorithm=alg).key
            raise AuthError("unauthorized", "unknown key id")
        if cfg.public_key_pem:
            return cfg.public_key_pem
    raise AuthError("unauthorized", f"algorithm {alg!r} not accepted")


def verify(cfg: AuthConfig, token: str) -> Identity:
    if not token or len(token) > 8192:
        raise AuthError("unauthorized", "missing or oversized token")
    try:
        header = jwt.get_unverified_header(token)
        key = _key_for(cfg, header)
        claims = jwt.decode(
            token,
            key,
            algorithms=[str(header["alg"])],
            issuer=cfg.issuer,
            audience=cfg.audience,
            options={"require": ["exp", "sub"], "verify_aud": cfg.audience is not None},
        )
    except jwt.ExpiredSignatureError as e:
        raise AuthError("token_expired", "token expired") from e
    except AuthError:
        raise
    except (jwt.PyJWTError, KeyError, ValueError, TypeError) as e:
        raise AuthError("unauthorized", f"invalid token: {e}") from e
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= SUB_MAX:
        raise AuthError("unauthorized", "token has no usable sub")
    if not USER_ID_RE.fullmatch(sub) or sub in (".", ".."):
        # The sub is the actor id and what topic audiences name, so it has their charset: every
        # user can be addressed, no control character reaches a log line, and daprd accepts the
        # id (it refuses '/', '?', '#', NUL, ...; '.' and '..' are path segments).
        raise AuthError("unauthorized", "token sub is not a valid user id ([A-Za-z0-9_.@:-])")
    return Identity(user=sub, expires_at=float(claims["exp"]))


def mint_hs256(secret: str, sub: str, ttl_s: float = 86400.0, **extra: Any) -> str:
    """Development/demo tokens only; production tokens come from the identity provider."""
    now = int(time.time())
    payload = {"sub": sub, "iat": now, "exp": now + int(ttl_s), **extra}
    return jwt.encode(payload, secret, algorithm="HS256")
