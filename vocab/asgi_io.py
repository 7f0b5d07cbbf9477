"""Reading a request body and writing a whole response at the raw ASGI level, for the hot routes
served without FastAPI (actors/fast_dispatch.py, gateway/topic_ingest.py)."""

from __future__ import annotations

from vocab.dapr_trust import Receive, Send


async def read_body(receive: Receive) -> bytes:
    """The whole body; ConnectionError when the caller went away before sending it."""
    chunks: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionError("the caller went away mid-request")
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


async def reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
