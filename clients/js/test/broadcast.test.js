// The shared broadcast stream beside the user's stream: frames with `bseq` instead of `seq`,
// deduped by bseq in their own epoch (bepoch), never acked, resumed through the compound
// since `epoch:seq,bepoch:bseq`, and resynced on their own (`resync_required` stream broadcast).

import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, settle, welcome, ev, bev, openWs, failWs, openSse, recordEvents, MemoryStorage } from "./fakes.js";
import { PositionTracker, formatResumePoint } from "../src/position.js";

const B = { bepoch: "B1", bseq: 10 };

test("broadcast frames go to the same handlers by type and '*', deduped by bseq", async () => {
  const env = setup();
  const created = [];
  env.client.on("task_created", (e) => created.push(e));
  const all = recordEvents(env);
  env.client.connect();
  const ws = await openWs(env, 0, B);
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B1", seq: 10 });
  ws.receive(bev(11, "task_created", { id: 5, title: "x" }));
  for (const b of [10, 11, 12, 9, 12]) ws.receive(bev(b, "task_updated"));
  assert.deepEqual(created, [{ type: "task_created", bseq: 11, id: "bev-11", data: { id: 5, title: "x" } }]);
  assert.deepEqual(all, ["b11", "b12"], "bseq <= the broadcast position is dropped");
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B1", seq: 12 });
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 0 }, "broadcasts leave the user position");
});

test("user seqs and broadcast bseqs are deduped independently", async () => {
  const env = setup();
  const got = recordEvents(env);
  env.client.connect();
  const ws = await openWs(env, 2, { bepoch: "B1", bseq: 2 });
  ws.receive(ev(3));
  ws.receive(bev(3)); // same number, other stream: not a duplicate
  ws.receive(bev(4));
  ws.receive(ev(4));
  ws.receive(ev(3));
  ws.receive(bev(3));
  assert.deepEqual(got, ["u3", "b3", "b4", "u4"]);
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 4 });
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B1", seq: 4 });
});

test("acks carry the user seq only, never a bseq", async () => {
  const env = setup({ ackIntervalMs: 500 });
  env.client.connect();
  const ws = await openWs(env, 0, B);
  for (let b = 11; b <= 20; b++) ws.receive(bev(b));
  await env.clock.advance(5000);
  assert.deepEqual(ws.frames, [], "broadcasts alone are never acked");
  ws.receive(ev(1));
  ws.receive(bev(21));
  ws.receive(ev(2));
  ws.receive(bev(22));
  await env.clock.advance(500);
  assert.deepEqual(ws.frames, [{ type: "ack", seq: 2 }]);
  ws.receive(bev(23));
  await env.clock.advance(5000);
  assert.deepEqual(ws.frames, [{ type: "ack", seq: 2 }], "no ack after a broadcast");
  assert.ok(ws.frames.every((f) => !("bseq" in f)));
});

test("SSE: acks are POSTed with the user seq only", async () => {
  const env = setup({ transports: ["sse"] });
  env.client.connect();
  await settle();
  const es = env.lastEs();
  es.open();
  es.receive(welcome(4, { conn_id: "c-9", ...B }), "E1:4,B1:10");
  es.receive(bev(11), "E1:4,B1:11");
  await env.clock.advance(5000);
  assert.equal(env.calls.length, 0, "no ack for a broadcast");
  es.receive(ev(5), "E1:5,B1:11");
  es.receive(bev(12), "E1:5,B1:12");
  await env.clock.advance(500);
  assert.deepEqual(env.calls.map((c) => [c.url, c.body]), [["http://gw.test:8001/sse/c-9/ack", { seq: 5 }]]);
});

test("welcome sets the broadcast position, never backwards in the same bepoch", async () => {
  const env = setup();
  env.client.connect();
  const ws = await openWs(env, 0, { bepoch: "B1", bseq: 5 });
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B1", seq: 5 });
  ws.receive(bev(6));
  ws.receive(bev(7));
  ws.serverClose(4011);
  await env.clock.advance(0);
  // A welcome behind what we processed (same bepoch) keeps our position, and its replay dedups.
  const ws2 = await openWs(env, 0, { bepoch: "B1", bseq: 6 });
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B1", seq: 7 });
  const got = [];
  env.client.on("*", (e) => got.push(e.bseq));
  ws2.receive(bev(7));
  ws2.receive(bev(8));
  assert.deepEqual(got, [8]);
  ws2.serverClose(4011);
  await env.clock.advance(0);
  // Another bepoch: taken as it is, even with a lower bseq.
  const ws3 = await openWs(env, 0, { bepoch: "B2", bseq: 2 });
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B2", seq: 2 });
  ws3.receive(bev(3));
  assert.deepEqual(got, [8, 3]);
});

test("a welcome without bepoch/bseq leaves the broadcast position alone", async () => {
  const env = setup();
  env.client.connect();
  const ws = await openWs(env, 0, B);
  ws.receive(bev(11));
  ws.serverClose(4011);
  await env.clock.advance(0);
  await openWs(env, 0);
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B1", seq: 11 });
});

test("resync_required with stream broadcast moves only the broadcast position (even backwards), unacked", async () => {
  const env = setup();
  const seen = [];
  env.client.onResync((f) => seen.push([f.stream, f.reason, env.client.broadcastPosition]));
  const got = recordEvents(env);
  env.client.connect();
  const ws = await openWs(env, 3, { bepoch: "B1", bseq: 40 });
  ws.receive(ev(4));
  ws.receive(bev(41));
  ws.receive({ type: "resync_required", epoch: "B1", seq: 20, reason: "too_old", stream: "broadcast" });
  assert.deepEqual(seen, [["broadcast", "too_old", { epoch: "B1", seq: 41 }]]);
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B1", seq: 20 }, "set there, even backwards");
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 4 }, "the user position stays");
  ws.receive(bev(20)); // at the new position: dropped
  ws.receive(bev(21));
  ws.receive(ev(4)); // still a user duplicate
  ws.receive(ev(5));
  assert.deepEqual(got, ["u4", "b41", "b21", "u5"]);
  await env.clock.advance(500);
  assert.deepEqual(ws.frames, [{ type: "ack", seq: 5 }], "the broadcast resync is not acked");
  ws.serverClose(4500);
  await env.clock.advance(10000);
  assert.equal(env.lastWs().params.get("since"), "E1:5,B1:21");
});

test("resync_required with stream broadcast into a new bepoch; a user resync leaves the broadcast position", async () => {
  const env = setup();
  env.client.connect();
  const ws = await openWs(env, 3, { bepoch: "B1", bseq: 40 });
  ws.receive({ type: "resync_required", epoch: "B7", seq: 2, reason: "epoch_changed", stream: "broadcast" });
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B7", seq: 2 });
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 3 });
  const got = [];
  env.client.on("*", (e) => got.push(e.bseq));
  ws.receive(bev(3));
  assert.deepEqual(got, [3]);
  ws.receive({ type: "resync_required", epoch: "E2", seq: 9, reason: "epoch_changed" });
  assert.deepEqual(env.client.position, { epoch: "E2", seq: 9 });
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B7", seq: 3 });
  ws.receive({ type: "resync_required", epoch: "X", seq: 1, reason: "?", stream: "other" });
  assert.deepEqual(env.client.position, { epoch: "E2", seq: 9 }, "an unknown stream is ignored");
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B7", seq: 3 });
});

test("an async broadcast resync holds later frames; a failed one keeps the broadcast position", async () => {
  const env = setup();
  let finish;
  env.client.onResync(() => new Promise((r) => { finish = r; }));
  const got = recordEvents(env);
  env.client.connect();
  const ws = await openWs(env, 0, B);
  ws.receive({ type: "resync_required", epoch: "B2", seq: 5, reason: "epoch_changed", stream: "broadcast" });
  ws.receive(bev(6));
  ws.receive(ev(1));
  await settle();
  assert.deepEqual(got, []);
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B1", seq: 10 }, "not moved until reload is done");
  finish();
  await settle();
  assert.deepEqual(got, ["b6", "u1"]);
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B2", seq: 6 });

  const env2 = setup();
  env2.client.onResync(async () => { throw new Error("reload failed"); });
  env2.client.connect();
  await openWs(env2, 4, B);
  env2.lastWs().receive({ type: "resync_required", epoch: "B2", seq: 5, reason: "epoch_changed", stream: "broadcast" });
  await settle();
  assert.deepEqual(env2.client.broadcastPosition, { epoch: "B1", seq: 10 });
  assert.equal(env2.errors.at(-1).code, "resync_failed");
  await env2.clock.advance(10000);
  assert.equal(env2.lastWs().params.get("since"), "E1:4,B1:10");
});

test("reconnect URL carries since=epoch:seq,bepoch:bseq (WebSocket)", async () => {
  const env = setup();
  env.client.connect();
  const ws = await openWs(env, 0, B);
  assert.equal(ws.params.has("since"), false, "first connect: no position yet");
  ws.receive(ev(1));
  ws.receive(ev(2));
  ws.receive(bev(11));
  ws.fail(1006);
  await env.clock.advance(10000);
  assert.equal(env.lastWs().params.get("since"), "E1:2,B1:11");
  assert.equal(env.client.resumePoint, "E1:2,B1:11");
  assert.match(env.lastWs().url, /[?&]since=E1%3A2%2CB1%3A11(&|$)/);
});

test("reconnect URL carries since=epoch:seq,bepoch:bseq (SSE), and so does the WebSocket probe", async () => {
  const env = setup({ transports: ["websocket", "sse"], wsFailuresBeforeFallback: 1, retryWebSocketAfterMs: 60000 });
  env.client.connect();
  await failWs(env, 1);
  const es = await openSse(env, 0, B); // SSE id E1:0,B1:10
  es.receive(ev(1), "E1:1,B1:10");
  es.receive(bev(11), "E1:1,B1:11");
  await env.clock.advance(60000);
  assert.equal(env.lastWs().params.get("since"), "E1:1,B1:11", "the probe resumes both streams");
  env.lastWs().fail();
  es.error(2);
  await env.clock.advance(10000);
  assert.equal(env.lastEs().params.get("since"), "E1:1,B1:11");
});

test("probe switch-over: broadcasts the two links overlap on are handled once", async () => {
  const env = setup({ wsFailuresBeforeFallback: 1, retryWebSocketAfterMs: 1000 });
  const got = [];
  env.client.on("*", (e) => got.push(e.bseq));
  env.client.connect();
  await failWs(env, 1);
  const es = await openSse(env, 0, B);
  es.receive(bev(11));
  await env.clock.advance(1000);
  const ws = env.lastWs();
  assert.equal(ws.params.get("since"), "E1:0,B1:11");
  es.receive(bev(12)); // SSE still delivering while the probe handshakes
  ws.open();
  ws.receive(welcome(0, { conn_id: "c-ws", bepoch: "B1", bseq: 11 }));
  assert.equal(env.client.transport, "websocket");
  assert.deepEqual(env.client.broadcastPosition, { epoch: "B1", seq: 12 }, "never moved back");
  ws.receive(bev(12));
  ws.receive(bev(13));
  assert.deepEqual(got, [11, 12, 13]);
});

test("persist: the broadcast position is stored and a reload resumes both streams", async () => {
  const KEY = "tasksync:http://gw.test:8001";
  const storage = new MemoryStorage();
  const env = setup({ persist: true, storage });
  env.client.connect();
  const ws = await openWs(env, 3, B);
  ws.receive(bev(12));
  assert.deepEqual(JSON.parse(storage.getItem(KEY)), { device: "dev-1", epoch: "E1", seq: 3, bepoch: "B1", bseq: 12 });
  const again = setup({ persist: true, storage, device: undefined });
  assert.deepEqual(again.client.broadcastPosition, { epoch: "B1", seq: 12 });
  again.client.connect();
  await settle();
  assert.equal(again.lastWs().params.get("since"), "E1:3,B1:12");
  const old = new MemoryStorage({ [KEY]: JSON.stringify({ device: "d", epoch: "E5", seq: 9 }) });
  const legacy = setup({ persist: true, storage: old, device: undefined });
  assert.equal(legacy.client.broadcastPosition, null, "a position stored before broadcasts still loads");
  legacy.client.connect();
  await settle();
  assert.equal(legacy.lastWs().params.get("since"), "E5:9");
  const bad = new MemoryStorage({ [KEY]: JSON.stringify({ device: "d", epoch: "E5", seq: 9, bepoch: "a,b", bseq: 1 }) });
  assert.equal(setup({ persist: true, storage: bad }).client.broadcastPosition, null, "a stored bepoch that isn't one");
});

test("PositionTracker: resume point text and per-stream rules", () => {
  const t = new PositionTracker({ device: "d", random: Math.random });
  assert.equal(t.resumePoint(), null);
  t.welcome("user", "E1", 5);
  assert.equal(t.resumePoint(), "E1:5");
  t.welcome("broadcast", "B1", 7);
  assert.equal(t.resumePoint(), "E1:5,B1:7");
  t.welcome("broadcast", "B1", 3);
  assert.deepEqual(t.broadcast, { epoch: "B1", seq: 7 });
  assert.equal(t.isDuplicate("broadcast", "B1", 7), true);
  assert.equal(t.isDuplicate("broadcast", "B1", 8), false);
  assert.equal(t.isDuplicate("user", "E1", 7), false);
  t.resync("broadcast", "B1", 2);
  assert.equal(t.resumePoint(), "E1:5,B1:2");
  assert.throws(() => t.get("other"), TypeError);
  assert.equal(formatResumePoint(null, { epoch: "B1", seq: 1 }), null);
});
