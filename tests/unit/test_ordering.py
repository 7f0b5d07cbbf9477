"""Unit tests for per-connection in-order delivery in gateway/ordering.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ordering import SeqCursor

# Each step: (seq offered, time, items delivered, gap after, gap_started after)
Step = tuple[int, float, list[int], tuple[int, int] | None, float | None]
SCENARIOS: list[tuple[str, int, int, list[Step]]] = [
    ("in-order", 0, 8, [
        (1, 0.0, [1], None, None),
        (2, 0.0, [2], None, None),
        (3, 0.0, [3], None, None),
    ]),
    ("starts-after-resume-position", 41, 8, [
        (42, 0.0, [42], None, None),
        (43, 0.0, [43], None, None),
    ]),
    ("duplicates-dropped", 0, 8, [
        (1, 0.0, [1], None, None),
        (1, 0.0, [], None, None),
        (0, 0.0, [], None, None),
        (-5, 0.0, [], None, None),
        (2, 0.0, [2], None, None),
    ]),
    ("reverse-order-released-at-once", 0, 8, [
        (3, 1.0, [], (1, 2), 1.0),
        (2, 2.0, [], (1, 1), 1.0),
        (1, 3.0, [1, 2, 3], None, None),
    ]),
    ("duplicate-of-held-item", 0, 8, [
        (3, 1.0, [], (1, 2), 1.0),
        (3, 2.0, [], (1, 2), 1.0),
        (1, 3.0, [1], (2, 2), 1.0),
        (2, 4.0, [2, 3], None, None),
    ]),
    ("gap-narrows-and-moves", 0, 8, [
        (4, 10.0, [], (1, 3), 10.0),
        (6, 11.0, [], (1, 3), 10.0),
        (1, 12.0, [1], (2, 3), 10.0),
        (2, 13.0, [2], (3, 3), 10.0),
        (3, 14.0, [3, 4], (5, 5), 11.0),
        (5, 15.0, [5, 6], None, None),
    ]),
    ("gap-start-is-oldest-arrival-even-if-clock-jumps-back", 0, 8, [
        (5, 20.0, [], (1, 4), 20.0),
        (3, 15.0, [], (1, 2), 15.0),
    ]),
]


@pytest.mark.parametrize(("last", "max_held", "steps"), [s[1:] for s in SCENARIOS],
                         ids=[s[0] for s in SCENARIOS])
def test_scenarios(last: int, max_held: int, steps: list[Step]) -> None:
    cur: SeqCursor[str] = SeqCursor(last, max_held=max_held)
    for seq, now, delivered, gap, started in steps:
        assert cur.offer(seq, f"e{seq}", now) == [f"e{s}" for s in delivered], seq
        assert cur.gap() == gap, seq
        assert cur.gap_started == started, seq
        assert not cur.overflowed


def test_last_tracks_delivery() -> None:
    cur: SeqCursor[int] = SeqCursor(0)
    cur.offer(2, 2, 0.0)
    assert cur.last == 0
    cur.offer(1, 1, 0.0)
    assert cur.last == 2


def test_overflow_is_sticky_and_bounded() -> None:
    cur: SeqCursor[int] = SeqCursor(0, max_held=2)
    assert cur.offer(3, 3, 0.0) == []
    assert cur.offer(4, 4, 0.0) == []
    assert not cur.overflowed
    assert cur.offer(5, 5, 0.0) == []
    assert cur.overflowed
    assert cur.held == 2  # the extra item was not kept
    assert cur.offer(1, 1, 0.0) == [1]
    # In-order delivery still never skips: 5 was dropped, so delivery stops at 4.
    assert cur.offer(2, 2, 0.0) == [2, 3, 4]
    assert cur.gap() is None
    assert cur.overflowed


def test_zero_hold_overflows_on_first_reorder() -> None:
    cur: SeqCursor[int] = SeqCursor(0, max_held=0)
    assert cur.offer(1, 1, 0.0) == [1]
    assert cur.offer(3, 3, 0.0) == []
    assert cur.overflowed


def test_reset_clears_everything() -> None:
    cur: SeqCursor[int] = SeqCursor(0, max_held=1)
    cur.offer(3, 3, 1.0)
    cur.offer(4, 4, 1.0)
    assert cur.overflowed
    cur.reset(10)
    assert (cur.last, cur.gap(), cur.gap_started, cur.overflowed, cur.held) == (
        10, None, None, False, 0
    )
    assert cur.offer(3, 3, 2.0) == []  # old seqs are duplicates now
    assert cur.offer(11, 11, 2.0) == [11]


def test_negative_max_held_refused() -> None:
    with pytest.raises(ValueError):
        SeqCursor(0, max_held=-1)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60).flatmap(
    lambda n: st.lists(st.integers(1, n), min_size=n).map(lambda extra: (n, extra)).flatmap(
        lambda t: st.permutations(list(range(1, t[0] + 1)) + t[1]).map(lambda p: (t[0], p))
    )
))
def test_any_arrival_order_delivers_each_seq_once_in_order(case: tuple[int, list[int]]) -> None:
    n, arrivals = case
    cur: SeqCursor[int] = SeqCursor(0, max_held=n)
    out: list[int] = []
    for i, seq in enumerate(arrivals):
        out += cur.offer(seq, seq, float(i))
        gap = cur.gap()
        if gap is not None:
            assert gap[0] == cur.last + 1 <= gap[1]
            assert cur.gap_started is not None
    assert out == list(range(1, n + 1))
    assert cur.gap() is None and cur.gap_started is None and not cur.overflowed
