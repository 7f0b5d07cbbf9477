import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, settle, welcome, ev, openWs } from "./fakes.js";

test("handlers per type and '*', with unsubscribe", async () => {
  const env = setup();
  const created = [];
  const all = [];
  const updated = [];
  env.client.on("task_created", (e) => created.push(e));
  env.client.on("*", (e) => all.push(e.seq));
  const off = env.client.on("task_updated", (e) => updated.push(e.seq));
  env.client.connect();
  const ws = await openWs(env);
  ws.receive(ev(1, "task_created", { id: 7, title: "a" }));
  ws.receive(ev(2, "task_updated"));
  off();
  ws.receive(ev(3, "task_updated"));
  ws.receive(ev(4, "task_deleted"));
  ws.receive(ev(5, "task_completed"));
  assert.deepEqual(created, [{ type: "task_created", seq: 1, id: "ev-1", data: { id: 7, title: "a" } }]);
  assert.deepEqual(updated, [2]);
  assert.deepEqual(all, [1, 2, 3, 4, 5]);
});

test("position advances after handlers run, not before", async () => {
  const env = setup();
  const seen = [];
  env.client.on("*", () => seen.push(env.client.position.seq));
  env.client.connect();
  const ws = await openWs(env, 3);
  ws.receive(ev(4));
  ws.receive(ev(9)); // a filtered stream may skip seqs: not a loss
  assert.deepEqual(seen, [3, 4]);
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 9 });
});

test("a throwing handler doesn't stop delivery and is reported via onError", async () => {
  const env = setup();
  const got = [];
  env.client.on("*", () => { throw new Error("boom"); });
  env.client.on("*", (e) => got.push(e.seq));
  env.client.connect();
  const ws = await openWs(env);
  ws.receive(ev(1));
  assert.deepEqual(got, [1]);
  assert.equal(env.errors.at(-1).code, "handler_error");
  assert.equal(env.client.position.seq, 1);
});

test("duplicates (seq <= position.seq) are dropped, also across a reconnect", async () => {
  const env = setup();
  const got = [];
  env.client.on("*", (e) => got.push(e.seq));
  env.client.connect();
  const ws = await openWs(env);
  for (const s of [1, 2, 3, 2, 3, 1]) ws.receive(ev(s));
  assert.deepEqual(got, [1, 2, 3]);
  ws.serverClose(4011);
  await env.clock.advance(0);
  const ws2 = await openWs(env, 3);
  assert.equal(ws2.params.get("since"), "E1:3");
  ws2.receive(ev(3));
  ws2.receive(ev(4));
  assert.deepEqual(got, [1, 2, 3, 4]);
});

test("acks are coalesced: many events, one ack with the highest seq per interval", async () => {
  const env = setup({ ackIntervalMs: 500 });
  env.client.connect();
  const ws = await openWs(env);
  for (let s = 1; s <= 50; s++) ws.receive(ev(s));
  await env.clock.advance(499);
  assert.deepEqual(ws.frames, [], "nothing before the interval");
  await env.clock.advance(1);
  assert.deepEqual(ws.frames, [{ type: "ack", seq: 50 }]);
  await env.clock.advance(5000);
  assert.equal(ws.frames.length, 1, "no ack without new events");
  for (let s = 51; s <= 60; s++) ws.receive(ev(s));
  await env.clock.advance(500);
  assert.deepEqual(ws.frames, [{ type: "ack", seq: 50 }, { type: "ack", seq: 60 }]);
});

test("never more than one ack per interval, even with events spread over it", async () => {
  const env = setup({ ackIntervalMs: 500 });
  env.client.connect();
  const ws = await openWs(env);
  const sent = [];
  const origSend = ws.send.bind(ws);
  ws.send = (d) => { origSend(d); sent.push([JSON.parse(d).seq, env.clock.now()]); };
  ws.receive(ev(1)); // t=0
  await env.clock.advance(400);
  ws.receive(ev(2)); // t=400
  await env.clock.advance(200);
  ws.receive(ev(3)); // t=600
  await env.clock.advance(400); // t=1000
  assert.deepEqual(sent, [[2, 500]], "no second ack within 500ms of the first");
  await env.clock.advance(100); // t=1100
  assert.deepEqual(sent, [[2, 500], [3, 1100]]);
  assert.deepEqual(ws.frames, [{ type: "ack", seq: 2 }, { type: "ack", seq: 3 }]);
});

test("an ack pending at a drop is sent on the next connection after welcome", async () => {
  const env = setup();
  env.client.connect();
  const ws = await openWs(env);
  ws.receive(ev(1));
  ws.receive(ev(2));
  ws.fail(1006);
  await env.clock.advance(10000);
  const ws2 = await openWs(env, 2);
  await env.clock.advance(500);
  assert.deepEqual(ws.frames, []);
  assert.deepEqual(ws2.frames, [{ type: "ack", seq: 2 }]);
});

test("resync_required: onResync first, then position moves to the frame's epoch:seq", async () => {
  const env = setup();
  const seen = [];
  env.client.onResync((f) => seen.push([f.reason, env.client.position]));
  const got = [];
  env.client.on("*", (e) => got.push(e.seq));
  env.client.connect();
  const ws = await openWs(env);
  ws.receive(ev(1));
  ws.receive(ev(2));
  ws.receive({ type: "resync_required", epoch: "E2", seq: 7, reason: "epoch_changed" });
  assert.deepEqual(seen, [["epoch_changed", { epoch: "E1", seq: 2 }]]);
  assert.deepEqual(env.client.position, { epoch: "E2", seq: 7 });
  ws.receive(ev(5)); // old seq in the new epoch: dropped
  ws.receive(ev(8));
  assert.deepEqual(got, [1, 2, 8]);
  await env.clock.advance(500);
  assert.deepEqual(ws.frames.at(-1), { type: "ack", seq: 8 });
  ws.serverClose(4500);
  await env.clock.advance(10000);
  assert.equal(env.lastWs().params.get("since"), "E2:8");
});

test("an async onResync holds later events until the app has reloaded", async () => {
  const env = setup();
  let finish;
  env.client.onResync(() => new Promise((r) => { finish = r; }));
  const got = [];
  env.client.on("*", (e) => got.push(e.seq));
  env.client.connect();
  const ws = await openWs(env);
  ws.receive({ type: "resync_required", epoch: "E2", seq: 10, reason: "too_old" });
  ws.receive(ev(11));
  ws.receive(ev(12));
  await settle();
  assert.deepEqual(got, []);
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 0 }, "not moved until reload is done");
  finish();
  await settle();
  assert.deepEqual(got, [11, 12]);
  assert.deepEqual(env.client.position, { epoch: "E2", seq: 12 });
});

test("a failed async onResync keeps the old position and reconnects", async () => {
  const env = setup();
  env.client.onResync(async () => { throw new Error("reload failed"); });
  env.client.connect();
  const ws = await openWs(env, 4);
  ws.receive({ type: "resync_required", epoch: "E2", seq: 10, reason: "too_old" });
  await settle();
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 4 });
  assert.equal(env.errors.at(-1).code, "resync_failed");
  assert.equal(env.client.state, "reconnecting");
  await env.clock.advance(10000);
  assert.equal(env.lastWs().params.get("since"), "E1:4");
});

test("error frames reach onError; a WebSocket stays open after one", async () => {
  const env = setup();
  env.client.connect();
  const ws = await openWs(env);
  ws.receive({ type: "error", code: "bad_field", message: "nope" });
  assert.deepEqual(env.errors, [{ type: "error", code: "bad_field", message: "nope" }]);
  assert.equal(env.client.state, "open");
});

test("connection filters are sent after welcome and re-sent after every reconnect", async () => {
  const env = setup({ filters: { types: ["task_created"], list_ids: [3] } });
  env.client.connect();
  const ws = await openWs(env);
  const sub = { type: "subscribe", filters: { types: ["task_created"], list_ids: ["3"] }, scope: "connection" };
  assert.deepEqual(ws.frames, [sub]);
  ws.serverClose(4011);
  await env.clock.advance(0);
  const ws2 = await openWs(env);
  assert.deepEqual(ws2.frames, [sub]);
  await env.client.unsubscribe();
  assert.deepEqual(ws2.frames.at(-1), { type: "unsubscribe", scope: "connection" });
  ws2.serverClose(4011);
  await env.clock.advance(0);
  const ws3 = await openWs(env);
  assert.deepEqual(ws3.frames, [], "cleared filters are not re-sent");
});

test("user-scope subscribe is queued until connected and sent once", async () => {
  const env = setup();
  const p = env.client.subscribe({ task_ids: [1, "2"] }, { scope: "user" });
  env.client.connect();
  const ws = await openWs(env);
  assert.equal(await p, true);
  assert.deepEqual(ws.frames, [{ type: "subscribe", filters: { task_ids: ["1", "2"] }, scope: "user" }]);
  ws.serverClose(4011);
  await env.clock.advance(0);
  const ws2 = await openWs(env);
  assert.deepEqual(ws2.frames, [], "user filters live on the server: not re-sent");
  const subscribed = [];
  env.client.on("subscribed", (f) => subscribed.push(f.scope));
  ws2.receive({ type: "subscribed", filters: null, scope: "user" });
  assert.deepEqual(subscribed, ["user"]);
});
