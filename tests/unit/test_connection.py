"""Per-connection rules: ordering, duplicates, epoch change, filters after ordering, bounds."""

import asyncio

import pytest

from actors.session_core import EventRecord, Filters
from gateway import protocol
from gateway.connection import Connection


def item(seq: int, kind: str = "task_updated", task: str = "1") -> EventRecord:
    return EventRecord(seq=seq, type=kind, id=f"e{seq}", data={"id": task}, task_id=task,
                       list_id=None, ts=0.0)


def conn(queue_max: int = 100) -> Connection:
    c = Connection("c1", "u1", "d1", "websocket", queue_max=queue_max, max_held=8,
                   expires_at=1e12)
    c.start("ep", 0)
    return c


def sent(c: Connection) -> list[tuple[str, int | None]]:
    out = []
    while not c.queue.empty():
        frame, _ = c.queue.get_nowait()
        out.append((frame["type"], frame.get("seq")))
    return out


@pytest.mark.parametrize(
    ("arrivals", "expected_seqs"),
    [
        pytest.param([1, 2, 3], [1, 2, 3], id="in-order"),
        pytest.param([1, 1, 2, 2, 3], [1, 2, 3], id="duplicates-dropped"),
        pytest.param([2, 3, 1], [1, 2, 3], id="reordered"),
        pytest.param([1, 3], [1], id="gap-holds"),
    ],
)
def test_ordering_table(arrivals: list[int], expected_seqs: list[int]) -> None:
    c = conn()
    for s in arrivals:
        c.offer("ep", item(s))
    assert [s for _, s in sent(c)] == expected_seqs
    assert c.has_gap() == (expected_seqs[-1] < max(arrivals))


def test_connection_filter_applies_after_ordering() -> None:
    c = conn()
    c.conn_filter = Filters(task_ids=frozenset({"7"}))
    c.offer("ep", item(2, task="7"))
    c.offer("ep", item(1, task="8"))  # filtered out, but it still closes the gap
    assert sent(c) == [("task_updated", 2)]
    assert not c.has_gap()


def test_new_epoch_tells_the_client_to_resync_first() -> None:
    c = conn()
    c.offer("ep", item(1))
    c.offer("ep2", item(1))
    assert sent(c) == [("task_updated", 1), ("resync_required", 0), ("task_updated", 1)]
    assert c.epoch == "ep2"


def test_queue_overflow_closes_as_slow_consumer() -> None:
    c = conn(queue_max=2)
    for s in (1, 2, 3):
        c.offer("ep", item(s))
    assert c.closed.is_set() and c.close_code is protocol.SLOW_CONSUMER


def test_held_overflow_closes_as_slow_consumer() -> None:
    c = conn()
    for s in range(3, 3 + 9):  # 9 held > max_held 8
        c.offer("ep", item(s))
    assert c.close_code is protocol.SLOW_CONSUMER


def test_events_before_attach_wait_then_drain_in_order() -> None:
    c = Connection("c1", "u1", "d1", "websocket", queue_max=10, max_held=8, expires_at=1e12)
    c.offer("ep", item(6))
    c.offer("ep", item(5))
    c.start("ep", 4)
    c.drain_early()
    assert [s for _, s in sent(c)] == [5, 6]


def test_ack_is_clamped_to_what_was_sent() -> None:
    c = conn()
    c.offer("ep", item(1))
    c.note_ack(99)
    assert c.pending_ack == 1


async def test_wait_room_paces_until_the_writer_takes_frames() -> None:
    c = conn(queue_max=4)
    for s in (1, 2, 3):
        c.offer("ep", item(s))
    waiter = asyncio.create_task(c.wait_room(5.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    await c.next_out()
    await asyncio.wait_for(waiter, 1.0)
    assert not c.closed.is_set()


async def test_wait_room_without_progress_is_a_slow_consumer() -> None:
    c = conn(queue_max=4)
    for s in (1, 2, 3):
        c.offer("ep", item(s))
    await c.wait_room(0.05)
    assert c.close_code is protocol.SLOW_CONSUMER


def test_a_shared_frame_is_encoded_once_for_every_connection() -> None:
    a, b = conn(), conn()
    shared = protocol.SharedFrame(protocol.event_frame("task_updated", 1, "e1", {"id": "1"}))
    a.offer("ep", item(1), shared)
    b.offer("ep", item(1), shared)
    fa, _ = a.queue.get_nowait()
    fb, _ = b.queue.get_nowait()
    assert fa is fb is shared
    assert protocol.encode(fa, "json") is protocol.encode(fb, "json")  # the cached text
    assert protocol.encode(fa, "msgpack") is protocol.encode(fb, "msgpack")
    assert protocol.format_sse(fa, "ep:1") == (
        'id: ep:1\ndata: {"type":"task_updated","seq":1,"id":"e1","data":{"id":"1"}}\n\n')
