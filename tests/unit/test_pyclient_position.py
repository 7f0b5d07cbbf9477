"""Position tracking, duplicate dropping and ack coalescing of the Python client."""

import itertools
from typing import Any

import pytest

from clients.pyclient.position import AckCoalescer, Position, PositionTracker, ResumePoint


@pytest.mark.parametrize(
    ("text", "expected"),
    [("abc:0", Position("abc", 0)), ("A-b_9:42", Position("A-b_9", 42)),
     ("e:9223372036854775807", Position("e", 2**63 - 1))],
)
def test_parse_position(text: str, expected: Position) -> None:
    assert Position.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text", ["", "abc", "abc:", ":1", "abc:-1", "abc:01", "a:b:1", "abc:1 ", "ab c:1",
             "e:12345678901234567890", "x" * 65 + ":1"],
)
def test_parse_refuses_non_canonical_positions(text: str) -> None:
    with pytest.raises(ValueError):
        Position.parse(text)


# Scripts of (operation, args, expected result of is_new or None) and the final position.
Step = tuple[str, tuple[Any, ...]]
SCRIPTS: list[tuple[str, Position | None, list[Step], str | None, list[bool]]] = [
    ("welcome sets the position", None, [("welcome", ("e", 5))], "e:5", []),
    ("events advance it", None,
     [("welcome", ("e", 0)), ("event", (1,)), ("event", (2,))], "e:2", [True, True]),
    ("duplicates and older seqs are dropped", None,
     [("welcome", ("e", 0)), ("event", (1,)), ("event", (2,)), ("event", (2,)),
      ("event", (1,)), ("event", (3,))], "e:3", [True, True, False, False, True]),
    ("seq jumps are fine (filters skip seqs)", None,
     [("welcome", ("e", 0)), ("event", (4,)), ("event", (9,))], "e:9", [True, True]),
    ("a later welcome in the same epoch never moves back", Position("e", 7),
     [("welcome", ("e", 5)), ("event", (6,)), ("event", (8,))], "e:8", [False, True]),
    ("a welcome in another epoch replaces the position", Position("old", 90),
     [("welcome", ("new", 3)), ("event", (4,))], "new:4", [True]),
    ("resync moves to exactly its position, even backwards", Position("e", 50),
     [("resync", ("f", 10)), ("event", (10,)), ("event", (11,))], "f:11", [False, True]),
    ("initial since, then the resumed welcome", Position("e", 3),
     [("welcome", ("e", 3)), ("event", (3,)), ("event", (4,))], "e:4", [False, True]),
]


@pytest.mark.parametrize(
    ("name", "initial", "steps", "final", "accepted"), SCRIPTS, ids=[s[0] for s in SCRIPTS]
)
def test_tracker(
    name: str, initial: Position | None, steps: list[Step], final: str | None,
    accepted: list[bool],
) -> None:
    t = PositionTracker(ResumePoint(initial) if initial is not None else None)
    seen: list[bool] = []
    for op, args in steps:
        if op == "welcome":
            t.user.welcome(*args)
        elif op == "resync":
            t.user.resync(*args)
        else:
            (seq,) = args
            new = t.user.is_new(seq)
            seen.append(new)
            if new:
                t.user.processed(seq)  # the client only advances after handlers ran
    assert str(t.position) == final
    assert seen == accepted


# The broadcast stream beside the user stream: (initial since, steps, final resume point, the
# is_new answers for broadcasts). Broadcasts never move the user position and vice versa.
BSCRIPTS: list[tuple[str, str | None, list[Step], str | None, list[bool]]] = [
    ("no broadcast position until a welcome names one", None,
     [("welcome", ("u", 2))], "u:2", []),
    ("welcome sets both", None, [("welcome", ("u", 2)), ("bwelcome", ("b", 7))], "u:2,b:7", []),
    ("broadcasts advance only the broadcast part", None,
     [("welcome", ("u", 2)), ("bwelcome", ("b", 7)), ("bevent", (8,)), ("bevent", (8,)),
      ("bevent", (7,)), ("bevent", (10,))], "u:2,b:10", [True, False, False, True]),
    ("a resumed welcome never moves the broadcast part back", "u:2,b:9",
     [("welcome", ("u", 2)), ("bwelcome", ("b", 5)), ("bevent", (9,)), ("bevent", (10,))],
     "u:2,b:10", [False, True]),
    ("another broadcast epoch replaces it", "u:2,b:9",
     [("bwelcome", ("c", 1))], "u:2,c:1", []),
    ("a broadcast resync moves only the broadcast part, even backwards", "u:4,b:90",
     [("bresync", ("b2", 3)), ("bevent", (3,)), ("bevent", (4,))], "u:4,b2:4", [False, True]),
    ("a user resync keeps the broadcast part", "u:4,b:9", [("resync", ("v", 1))], "v:1,b:9", []),
]


@pytest.mark.parametrize(
    ("name", "initial", "steps", "final", "accepted"), BSCRIPTS, ids=[s[0] for s in BSCRIPTS]
)
def test_tracker_two_streams(
    name: str, initial: str | None, steps: list[Step], final: str | None, accepted: list[bool],
) -> None:
    t = PositionTracker(ResumePoint.parse(initial) if initial is not None else None)
    seen: list[bool] = []
    for op, args in steps:
        if op == "bevent":
            (bseq,) = args
            seen.append(new := t.broadcast.is_new(bseq))
            if new:
                t.broadcast.processed(bseq)
        else:  # welcome / resync of the user stream, bwelcome / bresync of the broadcast one
            stream = t.broadcast if op.startswith("b") else t.user
            getattr(stream, op.removeprefix("b"))(*args)
    assert t.resume_point() == final
    assert seen == accepted


@pytest.mark.parametrize("text", ["e:1", "e:1,b:0", "A-b_9:42,x:9223372036854775807"])
def test_resume_point_round_trips(text: str) -> None:
    assert str(ResumePoint.parse(text)) == text


@pytest.mark.parametrize("text", ["", ",", "e:1,", ",b:1", "e:1,b:1,c:1", "e:1;b:1", "e:1,b",
                                  "e:1 ,b:1", "e:01,b:1"])
def test_resume_point_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        ResumePoint.parse(text)


# (time, operation, seq) -> what take/flush returns. interval 0.5 s.
ACKS: list[tuple[str, list[tuple[float, str, int | None]], list[int | None]]] = [
    ("first ack goes out at once", [(0.0, "note", 1), (0.0, "take", None)], [1]),
    ("nothing pending, nothing sent", [(0.0, "take", None), (9.0, "flush", None)],
     [None, None]),
    ("coalesced to the highest within the interval",
     [(0.0, "note", 1), (0.0, "take", None), (0.1, "note", 2), (0.2, "note", 3),
      (0.3, "take", None), (0.5, "take", None), (0.6, "take", None)], [1, None, 3, None]),
    ("flush ignores the interval",
     [(0.0, "note", 1), (0.0, "take", None), (0.1, "note", 5), (0.1, "flush", None)], [1, 5]),
    ("a failed ack is retried", [(0.0, "note", 4), (0.0, "take", None), (0.0, "failed", 4),
                                 (0.5, "take", None)], [4, 4]),
    ("a failed ack does not override a newer one",
     [(0.0, "note", 4), (0.0, "take", None), (0.1, "note", 6), (0.1, "failed", 4),
      (0.5, "take", None)], [4, 6]),
    ("after a resync the seq may go down",
     [(0.0, "note", 40), (0.0, "take", None), (1.0, "note", 2), (1.0, "take", None)], [40, 2]),
]


@pytest.mark.parametrize(("name", "ops", "sent"), ACKS, ids=[a[0] for a in ACKS])
def test_ack_coalescing(
    name: str, ops: list[tuple[float, str, int | None]], sent: list[int | None]
) -> None:
    a = AckCoalescer(0.5)
    out: list[int | None] = []
    for now, op, seq in ops:
        if op == "note":
            assert seq is not None
            a.note(seq)
        elif op == "failed":
            assert seq is not None
            a.failed(seq)
        elif op == "take":
            out.append(a.take(now))
        else:
            out.append(a.flush(now))
    assert out == sent


@pytest.mark.parametrize(
    ("last_sent", "now", "delay"), [(None, 0.0, 0.0), (1.0, 1.2, 0.3), (1.0, 1.5, 0.0),
                                    (1.0, 9.0, 0.0)],
)
def test_ack_delay_is_the_rest_of_the_interval(
    last_sent: float | None, now: float, delay: float
) -> None:
    a = AckCoalescer(0.5)
    if last_sent is not None:
        a.note(1)
        a.flush(last_sent)
    assert a.delay(now) == pytest.approx(delay)


def test_at_most_one_ack_per_interval_over_a_busy_stream() -> None:
    a = AckCoalescer(0.5)
    sent: list[tuple[float, int]] = []
    for i in range(1, 1001):  # an event every 10 ms for 10 s, take() polled after each
        now = i * 0.01
        a.note(i)
        if (s := a.take(now)) is not None:
            sent.append((now, s))
    gaps = [b[0] - a_[0] for a_, b in itertools.pairwise(sent)]
    assert all(g >= 0.5 - 1e-9 for g in gaps)
    assert 19 <= len(sent) <= 21
    final = a.flush(10.0)  # what close() would still send
    assert (final if final is not None else sent[-1][1]) == 1000
