"""Links that open the live demo board (gateway/static/index.html) for each demo user.

The board is served by every gateway at `/`; it takes the user's token, the demo task API and the
list of gateway replicas from its query string. The page is opened from one gateway and the client
moves to the next one when it loses its connection, so every gateway's origin must be allowed on
the others: pass `allowed_origins(gateways)` as TASKSYNC_ALLOWED_ORIGINS to the gateways.
"""

from urllib.parse import urlencode

from gateway.auth import mint_hs256


def allowed_origins(gateways: list[str]) -> str:
    """TASKSYNC_ALLOWED_ORIGINS value that lets a board served by one gateway use the others.
    Loopback URLs are listed under both 127.0.0.1 and localhost (the browser sends what the
    address bar says)."""
    out: list[str] = []
    for g in gateways:
        origin = g.rstrip("/")
        for o in (
            origin,
            origin.replace("://127.0.0.1", "://localhost"),
            origin.replace("://localhost", "://127.0.0.1"),
        ):
            if o not in out:
                out.append(o)
    return ",".join(out)


def board_url(gateways: list[str], api: str, token: str, *, page_from: int = 0) -> str:
    """URL of the board served by gateways[page_from], using all gateways (that one first)."""
    if not gateways:
        raise ValueError("at least one gateway URL is needed")
    ordered = gateways[page_from:] + gateways[:page_from]
    query = urlencode(
        {
            "token": token,
            "api": api.rstrip("/"),
            "gateways": ",".join(g.rstrip("/") for g in ordered),
        }
    )
    return f"{ordered[0].rstrip('/')}/?{query}"


def demo_links(
    gateways: list[str],
    api: str,
    secret: str,
    users: tuple[str, ...] = ("alice", "bob", "carol"),
    ttl_s: float = 86400,
) -> dict[str, str]:
    """One board URL per user, each with a fresh HS256 token; users are spread over the gateways
    (alice on the first, bob on the second, ...) so the demo shows cross-replica delivery."""
    return {
        user: board_url(gateways, api, mint_hs256(secret, user, ttl_s), page_from=i % len(gateways))
        for i, user in enumerate(users)
    }
