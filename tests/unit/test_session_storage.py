"""The storage layout of a session (actors/session_storage.py): what a turn writes, and that a
session rebuilt from the store equals the one in memory."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import session_core as core
from actors import session_storage as storage
from actors import task_order
from actors.session_storage import Operation

LIM = core.Limits(max_events=70, max_age_s=1e6, max_seen_ids=500, max_devices=4,
                  max_connections=4, lease_s=10.0, max_tasks=5, max_held=3)
T0 = 1000.0


def apply(store: dict[str, Any], ops: list[Operation]) -> None:
    """What daprd's transaction does to the keys, through JSON like the real store."""
    for op, key, value in ops:
        if op == "delete":
            store.pop(key, None)
        else:
            store[key] = json.loads(json.dumps(value))


def rebuild(store: dict[str, Any]) -> tuple[core.SessionMeta, dict[int, core.EventRecord]]:
    meta = store[storage.META_KEY]
    needed, buckets = storage.keys_needed(meta)
    held = store.get(storage.HELD_KEY) if storage.held_needed(meta) else None
    return storage.restore(meta, {k: store.get(storage.chunk_key(k)) for k in needed},
                           {b: store.get(storage.order_key(b)) for b in buckets}, held)


class Shell:
    """The shell's bookkeeping without I/O: the in-memory session plus a dict as the store."""

    def __init__(self) -> None:
        self.meta = core.new_session("ep1")
        self.records: dict[int, core.EventRecord] = {}
        self.store: dict[str, Any] = {}
        self.writes: list[list[Operation]] = []

    def commit(self, appended: list[int], deleted: list[int],
               buckets: frozenset[int] = frozenset(), held: bool = False) -> None:
        for s in deleted:
            self.records.pop(s, None)
        ops = storage.write_ops(self.meta, self.records, appended, deleted, buckets, held)
        self.writes.append(ops)
        apply(self.store, ops)

    def deliver(self, eid: str, now: float, version: int | None = None, task: str = "t1",
                type_: str = "task_updated") -> core.DeliverResult:
        held = dict(self.meta.order.held)
        res = core.deliver(self.meta, core.IncomingEvent(eid, type_, {"n": eid}, task, None,
                                                         version), now, LIM)
        self.keep([res, *(r for _, r in res.released)], held)
        return res

    def release(self, now: float) -> None:
        held = dict(self.meta.order.held)
        self.keep([r for _, r in core.release(self.meta, now, LIM)], held)

    def keep(self, results: list[core.DeliverResult], held: dict[str, Any]) -> None:
        for r in results:
            if r.record is not None:
                self.records[r.record.seq] = r.record
        self.commit([r.record.seq for r in results if r.record],
                    [s for r in results for s in r.delete],
                    frozenset(b for r in results for b in r.buckets),
                    self.meta.order.held != held)

    def ack(self, device: str, seq: int, now: float) -> None:
        self.commit([], core.ack(self.meta, device, seq, now, LIM))


def test_deliver_writes_meta_and_one_chunk_in_one_transaction() -> None:
    sh = Shell()
    for i in range(40):
        sh.deliver(f"e{i}", T0 + i)
    for ops in sh.writes:
        keys = [k for _, k, _ in ops]
        assert keys[0] == "meta" and len([k for k in keys if k.startswith("c:")]) == 1
    # The meta stays small however long the log: no stamps, no seen ids, no events.
    assert set(sh.store["meta"]) == {"v", "epoch", "head", "tail", "devices", "conns", "filters",
                                     "order"}
    assert sh.store["meta"]["order"] == {"stale": 0, "tick": 0, "buckets": [], "held": 0}
    assert sorted(sh.store) == ["c:0", "c:1", "meta"]
    assert len(sh.store["c:1"]) == 40 - storage.CHUNK


def test_rebuild_equals_memory_and_keeps_dedup() -> None:
    sh = Shell()
    core.attach(sh.meta, "c1", "gw", "d1", None, T0, LIM)
    for i in range(50):
        sh.deliver(f"e{i}", T0 + i)
    meta, records = rebuild(sh.store)
    assert meta == sh.meta
    assert records == sh.records
    # A redelivery after the rebuild is still a duplicate with its original seq.
    res = core.deliver(meta, core.IncomingEvent("e7", "task_updated", {}, "t1", None), T0, LIM)
    assert res.status == "duplicate" and res.seq == 8


def test_task_versions_live_in_buckets_written_with_the_turn() -> None:
    sh = Shell()
    for i, task in enumerate(("a", "b", "c", "d", "e", "f")):  # max_tasks=5: "a" is evicted
        sh.deliver(f"{task}1", T0 + i, 1, task, "task_created")
    sh.deliver("c2", T0 + 9, 2, "c", "task_deleted")
    sh.deliver("d1-again", T0 + 9, 1, "d")  # stale: counted in the meta
    sh.deliver("e5", T0 + 9, 5, "e")  # held: kept whole in the held key, written with the turn
    first = sh.writes[0]
    assert [k for _, k, _ in first] == ["meta", "c:0", storage.order_key(task_order.bucket_of("a"))]
    assert [k for _, k, _ in sh.writes[-1]] == ["meta", storage.HELD_KEY]
    assert sh.store["meta"]["order"]["stale"] == 1
    assert sh.store["meta"]["order"]["held"] == 1
    assert sh.store[storage.HELD_KEY] == [
        ["e5", "e", "task_updated", 5, T0 + 9,
         {"id": "e5", "type": "task_updated", "data": {"n": "e5"}, "task_id": "e",
          "list_id": None, "version": 5}]]
    # The meta names the used buckets; every bucket key holds only its own tasks.
    used = sh.store["meta"]["order"]["buckets"]
    assert sorted(k for k in sh.store if k.startswith("o:")) == sorted(
        storage.order_key(b) for b in used)
    meta, records = rebuild(sh.store)
    assert meta == sh.meta and list(meta.order.tasks) == list(sh.meta.order.tasks) == [
        "b", "d", "e", "f", "c"]
    assert records == sh.records
    # Its release (hold over) appends it and deletes the held key in the same transaction.
    sh.release(T0 + 9 + LIM.hold_s)
    assert [k for _, k, _ in sh.writes[-1]] == [
        "meta", "c:0", storage.order_key(task_order.bucket_of("e")), storage.HELD_KEY]
    assert storage.HELD_KEY not in sh.store and sh.records[sh.meta.head].id == "e5"
    assert rebuild(sh.store) == (sh.meta, sh.records)
    # Evicting the last task of a bucket deletes its key.
    for i in range(5):
        sh.deliver(f"z{i}", T0 + 20, 1, f"z{i}", "task_created")
    assert sorted(k for k in sh.store if k.startswith("o:")) == sorted(
        {storage.order_key(task_order.bucket_of(f"z{i}")) for i in range(5)})
    assert rebuild(sh.store)[0] == sh.meta


def test_a_lost_order_bucket_only_forgets_versions() -> None:
    sh = Shell()
    sh.deliver("a1", T0, 1, "a", "task_created")
    sh.store.pop(storage.order_key(task_order.bucket_of("a")))
    meta, records = rebuild(sh.store)
    assert meta.order.tasks == {} and records == sh.records


def test_fully_trimmed_chunks_are_deleted() -> None:
    sh = Shell()
    core.attach(sh.meta, "c1", "gw", "d1", None, T0, LIM)
    for i in range(3 * storage.CHUNK):
        sh.deliver(f"e{i}", T0)
    sh.ack("d1", 2 * storage.CHUNK + 1, T0)  # chunks 0 and 1 entirely acknowledged
    assert sorted(sh.store) == ["c:2", "meta"]
    meta, records = rebuild(sh.store)
    assert meta.tail == 2 * storage.CHUNK + 2 and sorted(records) == list(
        range(meta.tail, meta.head + 1))


def test_missing_chunk_is_log_lost() -> None:
    sh = Shell()
    for i in range(40):
        sh.deliver(f"e{i}", T0)
    del sh.store["c:0"]  # e.g. the store restarted without persistence
    with pytest.raises(storage.LogLost):
        rebuild(sh.store)


@pytest.mark.parametrize(
    ("meta", "chunks"),
    [
        pytest.param({"v": 1, "epoch": "e", "head": 0, "tail": 1}, {}, id="old-version"),
        pytest.param({"v": 2, "epoch": "e", "head": 1, "tail": 1, "devices": {}, "conns": {},
                      "filters": {}}, {0: {"x": 1}}, id="chunk-not-list"),
        pytest.param({"v": 2, "epoch": "e", "head": 1, "tail": 1, "devices": {}, "conns": {},
                      "filters": {}},
                     {0: [{"seq": 40, "id": "a", "type": "t", "data": {}, "ts": 0.0}]},
                     id="foreign-seq"),
        pytest.param({"v": 2, "epoch": "bad epoch", "head": 0, "tail": 1, "devices": {},
                      "conns": {}, "filters": {}}, {}, id="bad-epoch"),
        pytest.param({"v": 2, "epoch": "e", "head": 0, "tail": 1, "devices": {}, "conns": {},
                      "filters": {}, "order": {"buckets": [99]}}, {}, id="bad-order-bucket"),
        pytest.param({"v": 2, "epoch": "e", "head": 0, "tail": 1, "devices": {}, "conns": {},
                      "filters": {}, "order": {"stale": "x"}}, {}, id="bad-order-meta"),
    ],
)
def test_corrupt_storage_is_refused(meta: dict[str, Any], chunks: dict[int, Any]) -> None:
    with pytest.raises(ValueError):
        storage.restore(meta, chunks)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("deliver"), st.integers(0, 60)),
        # A versioned event: (id, task, version); the id names the pair so redeliveries match.
        st.tuples(st.just("versioned"), st.integers(0, 7), st.integers(1, 5)),
        st.tuples(st.just("ack"), st.integers(0, 200)),
        st.tuples(st.just("release"), st.integers(0, 3)),
    ),
    max_size=160,
)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_any_history_rebuilds_to_the_same_session(ops: list[tuple[Any, ...]]) -> None:
    sh = Shell()
    core.attach(sh.meta, "c1", "gw", "d1", None, T0, LIM)
    sh.commit([], [])
    for i, (kind, n, *rest) in enumerate(ops):
        if kind == "deliver":
            sh.deliver(f"e{n}", T0 + i)
        elif kind == "versioned":
            (version,) = rest
            sh.deliver(f"t{n}v{version}", T0 + i * 0.25, version, f"t{n}",
                       "task_deleted" if version == 5 else "task_updated")
        elif kind == "release":
            sh.release(T0 + i * 0.25 + n * LIM.hold_s)
        else:
            sh.ack("d1", n, T0 + i)
        meta, records = rebuild(sh.store)
        assert (meta.epoch, meta.head, meta.tail, meta.stamps) == (
            sh.meta.epoch, sh.meta.head, sh.meta.tail, sh.meta.stamps)
        assert meta.devices == sh.meta.devices and meta.conns == sh.meta.conns
        assert meta.order == sh.meta.order  # versions, LRU order, held events, stale counter
        assert list(meta.order.tasks) == list(sh.meta.order.tasks)
        assert records == sh.records
        # Every retained event's id stays deduplicated after a rebuild.
        assert {sid for sid, seq in meta.seen} >= {r.id for r in records.values()}
