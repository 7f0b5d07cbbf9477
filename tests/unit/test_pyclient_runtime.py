"""The Python client's run loop against scripted fake links (no network): close-code handling,
URL rotation, watchdog, acks, SSE error names, fallback, dedup across reconnects."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from clients.pyclient import TaskSyncClient
from clients.pyclient.links import Alive, ConnectFailed, Encoding, LinkClosed, SseLink, WsLink

Script = list[dict[str, Any] | LinkClosed | Alive]


def welcome(seq: int = 0, epoch: str = "ep", hb: float = 30.0) -> dict[str, Any]:
    return {"type": "welcome", "conn_id": "c1", "epoch": epoch, "seq": seq, "heartbeat": hb,
            "resumed": False}


def ev(seq: int) -> dict[str, Any]:
    return {"type": "task_updated", "seq": seq, "id": f"id{seq}", "data": {"id": seq}}


class FakeLinkMixin:
    """Plays a script, then stays silent until closed."""

    encoding: Encoding

    def setup(self, url: str, script: Script) -> None:
        self.url = url
        self.script = list(script)
        self.sent: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.encoding = "json"

    async def recv(self) -> dict[str, Any] | Alive:
        if self.script:
            item = self.script.pop(0)
            await asyncio.sleep(0)
            if isinstance(item, LinkClosed):
                raise item
            return item
        await self.closed.wait()
        raise LinkClosed(None, "closed")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed.set()


class FakeWs(FakeLinkMixin, WsLink):
    def __init__(self, url: str, script: Script) -> None:
        self.setup(url, script)

    async def send(self, frame: dict[str, Any]) -> bool:
        self.sent.append(frame)
        return not self.closed.is_set()


class FakeSse(FakeLinkMixin, SseLink):
    def __init__(self, url: str, script: Script) -> None:
        self.setup(url, script)

    async def post(self, conn_id: str, action: str, body: dict[str, Any], token: str) -> bool:
        self.sent.append({"type": action, **body})
        return True


Outcome = Script | ConnectFailed


class Harness:
    def __init__(self, client: TaskSyncClient, outcomes: list[tuple[str, Outcome]]) -> None:
        """outcomes: per connection attempt, the expected transport and what happens."""
        self.client = client
        self.outcomes = list(outcomes)
        self.attempts: list[tuple[str, str, str | None]] = []  # (transport, url, since)
        self.links: list[FakeWs | FakeSse] = []
        self.states: list[tuple[str, dict[str, Any]]] = []
        self.all_tried = asyncio.Event()
        client.on_state(lambda s, info: self.states.append((s, info)))
        client._open_link = self.open  # type: ignore[method-assign]

    async def open(self, kind: str, url: str, token: str) -> WsLink | SseLink:
        self.attempts.append((kind, url, self.client.position))
        if not self.outcomes:
            self.all_tried.set()
            await asyncio.Event().wait()  # no more scripted attempts: hang until closed
        want, outcome = self.outcomes.pop(0)
        assert kind == want, (kind, want, self.attempts)
        if isinstance(outcome, ConnectFailed):
            raise outcome
        link: FakeWs | FakeSse = FakeWs(url, outcome) if kind == "websocket" else FakeSse(
            url, outcome
        )
        self.links.append(link)
        return link

    async def run_until(self, cond: Callable[[], bool], timeout: float = 2.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            if loop.time() > deadline:
                raise TimeoutError(f"not within {timeout}s; states: {self.states}")
            await asyncio.sleep(0.001)

    def states_named(self, name: str) -> list[dict[str, Any]]:
        return [i for s, i in self.states if s == name]


def make(outcomes: list[tuple[str, Outcome]], **kw: Any) -> Harness:
    opts: dict[str, Any] = {"token": "t", "backoff_initial": 0.001, "backoff_max": 0.002,
                            "ack_interval": 0.05, **kw}
    urls = opts.pop("urls", ["http://a", "http://b"])
    return Harness(TaskSyncClient(urls, **opts), outcomes)


async def test_unauthorized_closes_for_good() -> None:
    h = make([("websocket", [welcome(), LinkClosed(4001, "unauthorized")])])
    await h.client.start()
    await h.run_until(lambda: h.client.state == "closed")
    assert h.client.state_info["code"] == 4001
    assert len(h.attempts) == 1
    with pytest.raises(ConnectionError):
        await h.client.wait_open(1)
    await h.client.close()


async def test_server_shutdown_rotates_at_once_then_backs_off() -> None:
    h = make([
        ("websocket", [welcome(), LinkClosed(4011, "server_shutdown")]),
        ("websocket", [LinkClosed(4011, "server_shutdown")]),  # before welcome this time
        ("websocket", [welcome()]),
    ])
    await h.client.start()
    await h.run_until(lambda: len(h.states_named("open")) == 2)
    assert [a[1] for a in h.attempts] == ["http://a", "http://b", "http://a"]
    delays = [i["delay"] for i in h.states_named("reconnecting")]
    assert delays[0] == 0.0 and delays[1] > 0  # immediate only once in a row
    await h.client.close()


async def test_connect_failure_rotates_and_counts_towards_sse_fallback() -> None:
    h = make([
        ("websocket", ConnectFailed("refused")),
        ("websocket", ConnectFailed("refused")),
        ("sse", [welcome(), ev(1)]),
    ], retry_websocket_after=60.0)
    stream = h.client.events()
    await h.client.start()
    await h.client.wait_open(2)
    assert h.client.transport == "sse"
    assert [a[0] for a in h.attempts] == ["websocket", "websocket", "sse"]
    assert [a[1] for a in h.attempts] == ["http://a", "http://b", "http://a"]
    assert (await anext(stream))["seq"] == 1
    await h.client.close()


async def test_ping_is_answered_and_silence_trips_the_watchdog() -> None:
    h = make([
        ("websocket", [welcome(hb=0.02), {"type": "ping", "ts": 1.5}]),  # then silence
        ("websocket", [welcome(hb=30)]),
    ])
    await h.client.start()
    await h.run_until(lambda: len(h.states_named("open")) == 2)
    assert {"type": "pong", "ts": 1.5} in h.links[0].sent
    assert h.states_named("reconnecting")[0]["code"] == 4012
    await h.client.close()


async def test_acks_are_coalesced_and_flushed_on_close() -> None:
    h = make([("websocket", [welcome(), ev(1), ev(2), ev(3)])], ack_interval=30.0)
    stream = h.client.events()
    await h.client.start()
    for _ in range(3):
        await anext(stream)
    await h.run_until(lambda: any(f["type"] == "ack" for f in h.links[0].sent))
    await h.client.close()
    acks = [f["seq"] for f in h.links[0].sent if f["type"] == "ack"]
    # One ack at once, then nothing for 30 s, and the highest processed seq on close.
    assert acks[0] in (1, 2, 3) and acks[-1] == 3 and len(acks) <= 2
    assert h.client.state == "closed" and h.client.state_info["code"] == 1000


async def test_sse_acks_and_pending_close_names() -> None:
    h = make([
        ("sse", [welcome(), {"type": "error", "code": "unavailable", "message": "x"}, ev(1),
                 {"type": "error", "code": "slow_consumer", "message": "y"}]),
        ("sse", [welcome(1), ev(2), {"type": "error", "code": "rate_limited"},
                 LinkClosed(None, "stream ended")]),
        ("sse", [welcome(2)]),
    ], transports=("sse",))
    errors: list[str] = []
    h.client.on_error(lambda f: errors.append(f["code"]))
    await h.client.start()
    await h.run_until(lambda: len(h.states_named("open")) == 3)
    codes = [i["code"] for i in h.states_named("reconnecting")]
    # unavailable followed by more frames was no close; slow_consumer is; rate_limited is when
    # the stream ends right after it.
    assert codes == [4010, 4008]
    assert errors == ["unavailable", "slow_consumer", "rate_limited"]
    assert h.client.position == "ep:2"
    # Acks go out as POSTs (on whichever link is up when the coalescer lets them out).
    await h.run_until(lambda: any(f == {"type": "ack", "seq": 2} for k in h.links for f in k.sent))
    await h.client.close()


async def test_reconnect_resumes_from_the_position_and_drops_duplicates() -> None:
    h = make([
        ("websocket", [welcome(), ev(1), ev(2), ev(3), LinkClosed(1006, "dropped")]),
        # A server replaying too much must not produce duplicates.
        ("websocket", [welcome(3), ev(2), ev(3), ev(4)]),
    ])
    got: list[int] = []
    h.client.on("*", lambda f: got.append(f["seq"]))
    await h.client.start()
    await h.run_until(lambda: got[-1:] == [4])
    assert got == [1, 2, 3, 4]
    assert [a[2] for a in h.attempts] == [None, "ep:3"]
    await h.client.close()


async def test_failed_resync_handler_keeps_the_old_position() -> None:
    resync = {"type": "resync_required", "epoch": "new", "seq": 7, "reason": "epoch_mismatch"}
    h = make([
        ("websocket", [welcome(5, epoch="new"), resync]),
        ("websocket", [welcome(5, epoch="new"), resync, ev(8)]),
    ], since="old:5")
    calls: list[int] = []

    async def reload(frame: dict[str, Any]) -> None:
        calls.append(frame["seq"])
        if len(calls) == 1:
            raise RuntimeError("todo API down")

    h.client.on_resync(reload)
    await h.client.start()
    await h.run_until(lambda: h.client.position == "new:8")
    assert calls == [7, 7]
    assert [a[2] for a in h.attempts] == ["old:5", "new:5"]
    await h.client.close()


async def test_token_expired_refreshes_via_get_token() -> None:
    tokens = iter(["t1", "t2"])
    used: list[str] = []

    async def get_token() -> str:
        used.append(next(tokens))
        return used[-1]

    h = make([
        ("websocket", [welcome(), LinkClosed(4002, "token_expired")]),
        ("websocket", [welcome()]),
    ], token=None, get_token=get_token)
    await h.client.start()
    await h.run_until(lambda: len(h.states_named("open")) == 2)
    assert used == ["t1", "t2"]
    await h.client.close()


async def test_token_expired_without_get_token_stops() -> None:
    h = make([("websocket", [welcome(), LinkClosed(4002, "token_expired")])])
    await h.client.start()
    await h.run_until(lambda: h.client.state == "closed")
    assert h.client.state_info["reason"] == "token_expired_no_get_token"
    await h.client.close()


async def test_connection_filters_are_sent_after_every_welcome() -> None:
    h = make([
        ("websocket", [welcome(), LinkClosed(4010, "slow_consumer")]),
        ("websocket", [welcome()]),
    ], filters={"task_ids": [7], "types": ["task_created"]})
    await h.client.start()
    await h.run_until(lambda: len(h.states_named("open")) == 2)
    want = {"type": "subscribe", "scope": "connection",
            "filters": {"types": ["task_created"], "task_ids": ["7"]}}
    assert [f for f in h.links[0].sent if f["type"] == "subscribe"] == [want]
    assert [f for f in h.links[1].sent if f["type"] == "subscribe"] == [want]
    await h.client.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"urls": []}, {"urls": "http://a"}, {"token": None}, {"transports": ()},
     {"transports": ("carrier-pigeon",)}, {"encoding": "xml"}, {"device": "bad device"},
     {"since": "nope"}, {"filters": {"task_id": [1]}}, {"filters": {"types": ["nope"]}}],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, Any]) -> None:
    opts: dict[str, Any] = {"urls": ["http://a"], "token": "t", **kwargs}
    with pytest.raises((TypeError, ValueError)):
        TaskSyncClient(opts.pop("urls"), **opts)
