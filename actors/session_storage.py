"""Pure storage layout of one user's session: which keys a turn writes, and how a session is
rebuilt from them. No I/O.

Keys (under the actor's own prefix, ``sessions||UserSession||<user>||``):
  meta     -> small: epoch, head, tail, devices, conns, filters, the task-order counters and
              held events (never the events, never the per-task versions)
  c:<k>    -> chunk k: the records of seqs k*CHUNK+1 .. (k+1)*CHUNK that are still retained
  o:<b>    -> task-order bucket b (actors/task_order.py): newest version of the tasks hashed to b
  h        -> the events held for a missing earlier version of their task (absent when none)

A ``deliver`` turn writes ``meta``, the one chunk it appended to, the order bucket(s) it
changed and ``h`` when its held events changed, in one transaction: the write stays small however
long the log is or however many tasks the user has, and rebuilding a session of N events reads
N/CHUNK chunks plus the used buckets (and ``h``) in one concurrent round (not N keys). Per-event
stamps and the dedup window are rebuilt from the records, so they are never written separately.
The active actor keeps everything in memory; it is the only writer under turn-based concurrency,
so it never reads before it writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, TypedDict

from actors import task_order
from actors.session_core import WIRE_VERSION, EventRecord, SessionMeta
from actors.session_types import ConnLeaseWire, DeviceCursorWire
from vocab.filters import FiltersWire
from vocab.json_types import WireMap
from vocab.wire_checks import _get, _int, _map

Operation = tuple[Literal["upsert", "delete"], str, object]
"""One write of a turn's transaction: (operation, key, JSON value or None for delete). Pure, so
the storage rules need no I/O module; the state client (actors/state_client.py) sends them."""

STORAGE_VERSION = 2
CHUNK = 32
META_KEY = "meta"
ORDER_PREFIX = "o:"
HELD_KEY = "h"


class StoredMetaWire(TypedDict):
    """The stored ``meta`` key (stamps, dedup window and task rows are rebuilt, not stored)."""

    v: int
    epoch: str
    head: int
    tail: int
    devices: dict[str, DeviceCursorWire]
    conns: dict[str, ConnLeaseWire]
    filters: FiltersWire
    order: task_order.OrderMetaWire


class LogLost(Exception):
    """Stored meta names events whose chunks are gone (the store lost data): the log cannot
    honour its positions and must start a new epoch."""


def chunk_of(seq: int) -> int:
    return (seq - 1) // CHUNK


def chunk_key(k: int) -> str:
    return f"c:{k}"


def order_key(b: int) -> str:
    return f"{ORDER_PREFIX}{b}"


def order_buckets_needed(stored_meta: WireMap) -> list[int]:
    """Order bucket indexes a stored meta says are in use (none for an unversioned user)."""
    order = stored_meta.get("order") or {}
    if not isinstance(order, Mapping):
        raise ValueError("order: expected an object")
    buckets = order.get("buckets", [])
    if not isinstance(buckets, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b < task_order.BUCKETS
            for b in buckets):
        raise ValueError("order.buckets: expected bucket indexes")
    return sorted(set(buckets))


def held_needed(stored_meta: WireMap) -> bool:
    """Whether a stored meta says events are held (the ``h`` key must be read)."""
    order = stored_meta.get("order") or {}
    count = order.get("held", 0) if isinstance(order, Mapping) else 0
    return isinstance(count, int) and not isinstance(count, bool) and count > 0


def keys_needed(stored_meta: WireMap) -> tuple[list[int], list[int]]:
    """Every key a rebuild reads after the meta, in one round: (chunks, order buckets)."""
    return chunks_needed(stored_meta), order_buckets_needed(stored_meta)


def meta_to_wire(meta: SessionMeta) -> StoredMetaWire:
    return {
        "v": STORAGE_VERSION,
        "epoch": meta.epoch,
        "head": meta.head,
        "tail": meta.tail,
        "devices": {name: c.to_wire() for name, c in meta.devices.items()},
        "conns": {cid: lease.to_wire() for cid, lease in meta.conns.items()},
        "filters": meta.filters.to_wire(),
        "order": meta.order.meta_to_wire(),
    }


def chunks_needed(stored_meta: WireMap) -> list[int]:
    """Chunk indexes holding the retained seqs tail..head of a stored meta."""
    head, tail = _int(_get(stored_meta, "head"), "head"), _int(_get(stored_meta, "tail"), "tail")
    if tail > head:
        return []
    return list(range(chunk_of(tail), chunk_of(head) + 1))


def restore(
    stored_meta: WireMap, chunks: Mapping[int, object],
    order_buckets: Mapping[int, object] | None = None, held: object = None,
) -> tuple[SessionMeta, dict[int, EventRecord]]:
    """Rebuild the in-memory session from ``meta``, its chunks, its task-order buckets and its
    held events (the value of ``h``; read it when ``held_needed``).

    Raises ValueError on a corrupt or foreign-version meta, LogLost when a retained event is
    missing. The dedup window after a rebuild is what the chunks still hold (retained events plus
    the trimmed ones sharing their chunk); filtered events are not remembered, and a redelivery of
    one is filtered again.
    """
    version = stored_meta.get("v")
    if version != STORAGE_VERSION:
        raise ValueError(f"unsupported session storage version {version!r}")
    head = _int(_get(stored_meta, "head"), "head")
    tail = _int(_get(stored_meta, "tail"), "tail")
    present: dict[int, EventRecord] = {}
    for k in sorted(chunks):
        raw = chunks[k]
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise ValueError(f"chunk {k}: expected a list")
        for item in raw:
            rec = EventRecord.from_wire(_map(item, "record"))
            if chunk_of(rec.seq) != k or rec.seq > head:
                raise ValueError(f"chunk {k} holds foreign seq {rec.seq}")
            present[rec.seq] = rec
    missing = [s for s in range(tail, head + 1) if s not in present]
    if missing:
        raise LogLost(f"{len(missing)} retained events missing (first seq {missing[0]})")
    # A missing bucket is an empty one: losing it only forgets versions (order degrades to
    # "first seen wins" for those tasks), never events.
    rows: list[object] = []
    for b in order_buckets_needed(stored_meta):
        raw = (order_buckets or {}).get(b)
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise ValueError(f"order bucket {b}: expected a list")
        rows += raw
    if held is not None and not isinstance(held, list):
        raise ValueError("held events: expected a list")
    order = _map(stored_meta.get("order") or {}, "order")  # a Mapping: checked above
    # The in-memory meta is the v1 value with stamps and dedup window rebuilt from the records;
    # SessionMeta.from_wire validates every field and invariant.
    meta = SessionMeta.from_wire({
        **stored_meta,
        "v": WIRE_VERSION,
        "stamps": [present[s].ts for s in range(tail, head + 1)],
        "seen": [[present[s].id, s] for s in sorted(present)],
        "order": {**order, "tasks": rows, "held_events": held or []},
    })
    retained = {s: r for s, r in present.items() if s >= meta.tail}
    return meta, retained


def write_ops(
    meta: SessionMeta,
    records: Mapping[int, EventRecord],
    appended: Iterable[int],
    deleted: Iterable[int],
    order_buckets: Iterable[int] = (),
    held: bool = False,
) -> list[Operation]:
    """The one transaction of a turn: meta, every chunk that got a new record, the chunks that
    trimming emptied, the task-order buckets that changed (deleted once empty), and the held
    events when ``held`` says they changed (deleted once none).
    ``records`` is the in-memory log after the turn (seq >= tail)."""
    ops: list[Operation] = [("upsert", META_KEY, meta_to_wire(meta))]
    for k in sorted({chunk_of(s) for s in appended}):
        lo, hi = k * CHUNK + 1, (k + 1) * CHUNK
        rows = [records[s].to_wire() for s in range(max(lo, meta.tail), min(hi, meta.head) + 1)]
        ops.append(("upsert", chunk_key(k), rows))
    for k in sorted({chunk_of(s) for s in deleted}):
        if (k + 1) * CHUNK < meta.tail:  # every seq of the chunk is trimmed
            ops.append(("delete", chunk_key(k), None))
    for b in sorted(set(order_buckets)):
        marks = meta.order.bucket_rows(b)
        ops.append(("upsert", order_key(b), marks) if marks else ("delete", order_key(b), None))
    if held:
        held_rows = meta.order.held_to_wire()
        ops.append(("upsert", HELD_KEY, held_rows) if held_rows else ("delete", HELD_KEY, None))
    return ops
