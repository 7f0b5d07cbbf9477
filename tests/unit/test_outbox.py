"""The outbox (gateway/outbox.py): no added delay when idle, bigger batches when busy, and each
item learns its own result from exactly the batch that carried it."""

import asyncio

import pytest

from actors.session_core import EventRecord
from gateway.forwards import ForwardItem
from gateway.outbox import Outbox


def item(n: int) -> ForwardItem:
    return ForwardItem("u", ["c"], "ep", EventRecord(n, f"e{n}", "task_updated", {}, None, None, 0))


async def test_items_of_one_turn_go_together_and_later_ones_wait_for_the_flight() -> None:
    gate = asyncio.Event()
    sent: list[list[int]] = []

    async def send(items: list[ForwardItem]) -> list[None]:
        sent.append([i.record.seq for i in items])
        await gate.wait()
        return [None] * len(items)

    box = Outbox(send)
    first = [box.add(item(1)), box.add(item(2))]
    await asyncio.sleep(0)  # one loop turn: the first batch leaves
    later = [box.add(item(3)), box.add(item(4))]
    await asyncio.sleep(0.01)
    assert sent == [[1, 2]]  # 3 and 4 wait while [1, 2] is in flight
    gate.set()
    await asyncio.gather(*first, *later)
    assert sent == [[1, 2], [3, 4]] and box.batches == 2


async def test_a_failed_batch_fails_only_its_own_items() -> None:
    calls = 0

    async def send(items: list[ForwardItem]) -> list[None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("peer down")
        return [None] * len(items)

    box = Outbox(send)
    a = box.add(item(1))
    with pytest.raises(ConnectionError):
        await a
    b = box.add(item(2))
    await b
    assert calls == 2


async def test_each_item_gets_its_own_result() -> None:
    async def send(items: list[int]) -> list[bool]:
        return [n % 2 == 0 for n in items]

    box = Outbox[int, bool](send)
    assert await asyncio.gather(*(box.add(n) for n in range(5))) == [True, False, True, False, True]
    assert box.batches == 1


async def test_a_send_that_answers_the_wrong_number_of_results_fails_its_items() -> None:
    async def send(items: list[int]) -> list[bool]:
        return [True]  # one result for a batch of two: which item is it for?

    box = Outbox[int, bool](send)
    a, b = box.add(1), box.add(2)
    for fut in (a, b):
        with pytest.raises(RuntimeError, match="1 results for 2 items"):
            await fut


async def test_a_send_that_answers_no_sequence_fails_its_items_instead_of_hanging() -> None:
    async def send(items: list[int]) -> list[bool]:
        return None  # type: ignore[return-value]  # e.g. a sender ported from the old contract

    box = Outbox[int, bool](send)
    with pytest.raises(RuntimeError, match="None results for 1 items"):
        await asyncio.wait_for(box.add(1), 5)
