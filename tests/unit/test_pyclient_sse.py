"""SSE parser of the Python client: the event-stream rules, whatever the chunking."""

import pytest

from clients.pyclient.sse import SseComment, SseItem, SseMessage, SseParser


def parse(chunks: list[str | bytes]) -> tuple[list[SseItem], SseParser]:
    p = SseParser()
    out: list[SseItem] = []
    for c in chunks:
        out += p.feed(c)
    return out, p


M = SseMessage
CASES: list[tuple[str, list[str | bytes], list[SseItem]]] = [
    ("one message", ["data: {\"a\":1}\n\n"], [M('{"a":1}')]),
    ("multi-line data joined by LF", ["data: a\ndata: b\ndata:\n\n"], [M("a\nb\n")]),
    ("comment", [": ping 123\n\n"], [SseComment("ping 123")]),
    ("comment without space", [":x\n"], [SseComment("x")]),
    ("id travels with the message", ["id: e:1\ndata: x\n\n"], [M("x", id="e:1")]),
    ("id persists to the next message", ["id: e:1\ndata: x\n\ndata: y\n\n"],
     [M("x", id="e:1"), M("y", id="e:1")]),
    ("empty id resets it", ["id: e:1\ndata: x\n\nid\ndata: y\n\n"],
     [M("x", id="e:1"), M("y", id="")]),
    ("id with NUL is ignored", ["id: e:1\ndata: x\n\nid: a\0b\ndata: y\n\n"],
     [M("x", id="e:1"), M("y", id="e:1")]),
    ("event name", ["event: update\ndata: x\n\n"], [M("x", event="update")]),
    ("CRLF line ends", ["data: a\r\ndata: b\r\n\r\n"], [M("a\nb")]),
    ("CR line ends", ["data: a\rdata: b\r\r"], [M("a\nb")]),
    ("CRLF split across chunks", ["data: a\r", "\ndata: b\r", "\n\r", "\n"], [M("a\nb")]),
    ("CR then a new line in the next chunk", ["data: a\r", "data: b\r\r"], [M("a\nb")]),
    ("field without colon", ["data\n\n"], [M("")]),
    ("no space after colon", ["data:x\n\n"], [M("x")]),
    ("only one leading space is stripped", ["data:  x\n\n"], [M(" x")]),
    ("colon in value kept", ["data: a:b: c\n\n"], [M("a:b: c")]),
    ("no data: nothing dispatched", ["event: x\n\n", "\n\n"], []),
    ("unknown fields ignored", ["foo: bar\ndata: x\n\n"], [M("x")]),
    ("unterminated message is held back", ["data: x\n"], []),
    ("BOM at stream start", ["\ufeffdata: x\n\n"], [M("x")]),
    ("bytes split inside a UTF-8 character",
     ["data: grüße ✓\n\n".encode()[:9], "data: grüße ✓\n\n".encode()[9:]],
     [M("grüße ✓")]),
]


@pytest.mark.parametrize(("name", "chunks", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parse(name: str, chunks: list[str | bytes], expected: list[SseItem]) -> None:
    got, _ = parse(chunks)
    assert got == expected


@pytest.mark.parametrize(("name", "chunks", "expected"), CASES, ids=[c[0] for c in CASES])
def test_any_chunking_gives_the_same_result(
    name: str, chunks: list[str | bytes], expected: list[SseItem]
) -> None:
    whole = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
    one_byte_at_a_time = [whole[i : i + 1] for i in range(len(whole))]
    got, _ = parse(list(one_byte_at_a_time))
    assert got == expected


@pytest.mark.parametrize(
    ("line", "retry"),
    [("retry: 1000", 1000), ("retry: 0", 0), ("retry: 10s", None), ("retry: -5", None),
     ("retry: ١٢", None), ("retry:", None)],
)
def test_retry_takes_only_ascii_digits(line: str, retry: int | None) -> None:
    _, p = parse([f"{line}\n\n"])
    assert p.retry_ms == retry


def test_server_stream_as_the_gateway_writes_it() -> None:
    stream = (
        "retry: 1000\n\n"
        'id: ep:0\ndata: {"type":"welcome","seq":0}\n\n'
        ": ping 1700000000\n\n"
        'id: ep:1\ndata: {"type":"task_created","seq":1}\n\n'
    )
    got, p = parse([stream])
    assert got == [
        M('{"type":"welcome","seq":0}', id="ep:0"),
        SseComment("ping 1700000000"),
        M('{"type":"task_created","seq":1}', id="ep:1"),
    ]
    assert p.retry_ms == 1000 and p.last_event_id == "ep:1"
