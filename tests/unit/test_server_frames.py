"""Batch messages: runs of event frames packed into one message, built from each frame's own
encoding, decoding to exactly the frames it holds, in order; anything else travels alone."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from gateway import server_frames as sf


def ev(seq: int, shared: bool = False) -> sf.Frame:
    body = sf.event_frame("task_updated", seq, f"e{seq}", {"id": seq, "t": "ü"})
    return sf.SharedFrame(body) if shared else body


PING = sf.ping(1.0)
BCAST = sf.broadcast_frame("task_created", 4, "b4", {"id": 4})
RESYNC = sf.resync_required("e", 3, "too_old")

# (name, frames, the message shapes: "b<n>" a batch of n frames, "1" a frame alone)
GROUPS: list[tuple[str, list[sf.Frame], list[str]]] = [
    ("events together", [ev(1), ev(2), ev(3)], ["b3"]),
    ("a ping splits them", [ev(1), PING, ev(2), ev(3)], ["1", "1", "b2"]),
    ("a lone event stays plain", [PING, ev(1), RESYNC], ["1", "1", "1"]),
    ("user and broadcast events mix", [ev(1), BCAST, ev(2, shared=True)], ["b3"]),
    ("capped at MAX_BATCH", [ev(i) for i in range(sf.MAX_BATCH + 2)],
     [f"b{sf.MAX_BATCH}", "b2"]),
]


@pytest.mark.parametrize(("name", "frames", "shapes"), GROUPS, ids=[g[0] for g in GROUPS])
@pytest.mark.parametrize("enc", ["json", "msgpack"])
def test_batches_keep_order_and_decode_to_their_frames(
    name: str, frames: list[sf.Frame], shapes: list[str], enc: sf.Encoding
) -> None:
    groups = sf.batches(frames)
    assert [f"b{len(g)}" if len(g) > 1 else "1" for g in groups] == shapes
    decoded: list[Any] = []
    for g in groups:
        raw = sf.encode_batch(g, enc) if len(g) > 1 else sf.encode(g[0], enc)
        msg = json.loads(raw) if enc == "json" else msgpack.unpackb(raw)
        decoded += msg["frames"] if msg["type"] == "batch" else [msg]
    assert decoded == [sf.body(f) for f in frames]


def test_a_shared_frame_is_encoded_once_for_batches_too() -> None:
    frame = ev(1, shared=True)
    assert isinstance(frame, sf.SharedFrame)
    sf.encode_batch([frame, ev(2)], "json")
    first = frame.encoded("json")
    sf.encode_batch([frame, ev(3)], "json")
    assert frame.encoded("json") is first
