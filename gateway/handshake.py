"""The checks every new connection passes, whatever its transport: origin, token, device id and
resume position. Each transport turns a refusal into its own answer (a close code for /ws, an
HTTP status for /sse)."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from gateway import protocol
from gateway.auth import AuthConfig, AuthError, Identity, verify
from vocab.ids import valid_device
from vocab.position import ResumePoint


@dataclass(frozen=True)
class ConnectParams:
    ident: Identity
    device: str
    since: str | None


class ConnectRefused(Exception):
    def __init__(self, close: protocol.CloseCode, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close = close  # WebSocket answer
        self.status = status  # HTTP answer (SSE)
        self.code = code  # error-frame code
        self.message = message


def bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """No Origin (non-browser client) is fine; a browser must be same-host or allowlisted."""
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    bare = origin.split("://", 1)[-1]
    return host is not None and bare == host


def check_connect(
    auth: AuthConfig,
    allowed_origins: tuple[str, ...],
    headers: Mapping[str, str],
    query: Mapping[str, str],
    since: str | None,
) -> ConnectParams:
    if not origin_allowed(headers.get("origin"), headers.get("host"), allowed_origins):
        raise ConnectRefused(
            protocol.FORBIDDEN_ORIGIN, 403, "forbidden_origin", "origin not allowed"
        )
    token = bearer(headers.get("authorization")) or query.get("token")
    try:
        ident = verify(auth, token or "")
    except AuthError as e:
        close = protocol.TOKEN_EXPIRED if e.code == "token_expired" else protocol.UNAUTHORIZED
        raise ConnectRefused(close, 401, e.code, e.message) from e
    device = query.get("device") or uuid.uuid4().hex[:16]
    if not valid_device(device):
        raise ConnectRefused(protocol.PROTOCOL_ERROR, 400, "bad_field", "bad device id")
    if since is not None:
        try:
            ResumePoint.parse(since)
        except ValueError as e:
            raise ConnectRefused(
                protocol.PROTOCOL_ERROR, 400, "bad_field", "bad since position"
            ) from e
    return ConnectParams(ident, device, since)
