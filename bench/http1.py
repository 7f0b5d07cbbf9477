"""A minimal keep-alive HTTP/1.1 POST client for the publish paths (daprd, Centrifugo's API).

httpx costs several times more CPU per request than the servers under test spend on it; this pool
of plain asyncio streams keeps the load generator cheap. Only what the two APIs answer is
handled: a status line, headers, and a Content-Length or chunked body.
"""

import asyncio


class HttpError(Exception):
    pass


class Http1Pool:
    def __init__(self, port: int, size: int = 32, headers: dict[str, str] | None = None):
        self.port, self.size = port, size
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.sem = asyncio.Semaphore(size)
        self.all: list[asyncio.StreamWriter] = []

    async def _conn(self, reuse: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        if reuse and not self.idle.empty():
            r, w = self.idle.get_nowait()
            return r, w, True
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 5)
        self.all.append(w)
        return r, w, False

    async def post(self, path: str, body: bytes, limit_s: float = 30) -> tuple[int, bytes]:
        async with self.sem:
            for attempt in range(2):
                r, w, reused = await self._conn(reuse=attempt == 0)
                try:
                    status, data, keep = await asyncio.wait_for(
                        self._roundtrip(r, w, path, body), limit_s)
                except (HttpError, ConnectionError, asyncio.IncompleteReadError):
                    w.close()
                    if reused:  # the server closed an idle keep-alive connection: once more
                        continue
                    raise
                except BaseException:
                    w.close()
                    raise
                if keep:
                    self.idle.put_nowait((r, w))
                else:
                    w.close()
                return status, data
            raise HttpError("unreachable")

    async def _roundtrip(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, path: str,
                         body: bytes) -> tuple[int, bytes, bool]:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"{self.extra}\r\n")
        w.write(head.encode() + body)
        line = await r.readline()
        if not line:
            raise HttpError("connection closed")
        status = int(line.split(b" ", 2)[1])
        length, chunked, keep = 0, False, True
        for _ in range(100):
            h = await r.readline()
            if h in (b"\r\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            k, v = k.strip().lower(), v.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v:
                chunked = True
            elif k == "connection" and v == "close":
                keep = False
        if not chunked:
            return status, (await r.readexactly(length) if length else b""), keep
        data = b""
        for _ in range(10_000):
            size = int((await r.readline()).split(b";")[0], 16)
            chunk = await r.readexactly(size + 2)
            if size == 0:
                break
            data += chunk[:-2]
        return status, data, keep

    async def close(self) -> None:
        for w in self.all:
            w.close()
