import { test } from "node:test";
import assert from "node:assert/strict";
import { TaskSyncClient } from "../src/index.js";
import { setup, settle, welcome, ev, MemoryStorage, openWs } from "./fakes.js";

const A = "http://gw-a.test:8001";
const B = "http://gw-b.test:8002";

const hostOf = (x) => new URL(x.url).host;

test("url list: starts on the first gateway; a dropped link retries it, a dead one moves on and resumes", async () => {
  const env = setup({ url: [A, `${B}/`], random: () => 0 });
  assert.equal(env.client.url, A);
  env.client.connect();
  const ws = await openWs(env, 3);
  assert.equal(hostOf(ws), "gw-a.test:8001");
  assert.equal(env.client.url, A);
  ws.receive(ev(4));
  ws.fail(); // gateway A killed: 1006 after a healthy run
  let [state, info] = env.states.at(-1);
  assert.equal(state, "reconnecting");
  assert.equal(info.attempt, 1);
  assert.equal(env.client.url, A, "a healthy link dropped: the same gateway first (the table names no other)");
  await env.clock.advance(info.delayMs);
  const again = env.lastWs();
  assert.notEqual(again, ws);
  assert.equal(hostOf(again), "gw-a.test:8001");
  assert.equal(again.params.get("since"), "E1:4");
  again.fail(); // A refuses: never opened, no close code from a server
  [state, info] = env.states.at(-1);
  assert.equal(state, "reconnecting");
  assert.equal(info.attempt, 2);
  assert.equal(env.client.url, B, "a dead replica: the next attempt goes to B");
  await env.clock.advance(info.delayMs);
  const ws2 = env.lastWs();
  assert.notEqual(ws2, again);
  assert.equal(hostOf(ws2), "gw-b.test:8002");
  assert.equal(ws2.params.get("since"), "E1:4", "resumes where A left off");
  ws2.open();
  ws2.receive(welcome(4, { resumed: true }));
  const got = [];
  env.client.on("*", (e) => got.push(e.seq));
  ws2.receive(ev(4)); // duplicate at the seam is still dropped
  ws2.receive(ev(5));
  assert.deepEqual(got, [5]);
  assert.equal(env.client.state, "open");
  assert.equal(env.client.url, B);
});

test("url list: failed attempts go round-robin and wrap around", async () => {
  const env = setup({ url: [A, B, "http://gw-c.test:8003"], transports: ["websocket"], random: () => 0 });
  env.client.connect();
  const hosts = [];
  for (let i = 0; i < 4; i++) {
    await settle();
    const ws = env.lastWs();
    hosts.push(hostOf(ws));
    ws.fail(); // never opened
    await env.clock.advance(env.states.at(-1)[1].delayMs);
  }
  assert.deepEqual(hosts, ["gw-a.test:8001", "gw-b.test:8002", "gw-c.test:8003", "gw-a.test:8001"]);
});

test("url list: a dead first gateway does not count towards the SSE fallback once the next one works", async () => {
  const env = setup({ url: [A, B], random: () => 0, wsFailuresBeforeFallback: 2 });
  env.client.connect();
  await settle();
  env.lastWs().fail(); // A refuses
  await env.clock.advance(env.states.at(-1)[1].delayMs);
  const ws = await openWs(env, 0);
  assert.equal(hostOf(ws), "gw-b.test:8002");
  ws.fail(); // B drops after a healthy run: B again, still WebSocket
  await env.clock.advance(env.states.at(-1)[1].delayMs);
  assert.equal(env.sources.length, 0, "no SSE");
  assert.equal(hostOf(env.lastWs()), "gw-b.test:8002");
  assert.equal(env.sockets.length, 3);
});

test("url list: SSE stream and its POSTs use the gateway the stream was opened on", async () => {
  const env = setup({ url: [A, B], transports: ["sse"], random: () => 0, ackIntervalMs: 100 });
  env.client.connect();
  await settle();
  let es = env.lastEs();
  assert.equal(hostOf(es), "gw-a.test:8001");
  es.error(2); // A gone, browser gave up
  await env.clock.advance(env.states.at(-1)[1].delayMs);
  es = env.lastEs();
  assert.equal(hostOf(es), "gw-b.test:8002");
  es.open();
  es.receive(welcome(0, { conn_id: "c-b" }), "E1:0");
  es.receive(ev(1), "E1:1");
  await env.clock.advance(100);
  const ack = env.calls.find((c) => c.url.endsWith("/ack"));
  assert.ok(ack, "an ack was posted");
  assert.equal(ack.url, `${B}/sse/c-b/ack`);
  assert.deepEqual(ack.body, { seq: 1 });
});

test("url list: a non-reconnect close stops without trying the other gateways", async () => {
  const env = setup({ url: [A, B], random: () => 0 });
  env.client.connect();
  const ws = await openWs(env);
  ws.serverClose(4001, "unauthorized");
  await env.clock.advance(60000);
  assert.equal(env.client.state, "closed");
  assert.equal(env.sockets.length, 1);
});

test("url list: persisted under the first URL, so a reload resumes whichever gateway it was on", async () => {
  const storage = new MemoryStorage();
  const env = setup({ url: [A, B], persist: true, storage, device: undefined, random: () => 0 });
  env.client.connect();
  await settle();
  env.lastWs().fail(); // A refuses
  await env.clock.advance(env.states.at(-1)[1].delayMs);
  const ws = await openWs(env, 0);
  assert.equal(hostOf(ws), "gw-b.test:8002");
  ws.receive(ev(1));
  ws.receive(ev(2));
  const saved = JSON.parse(storage.getItem(`tasksync:${A}`));
  assert.deepEqual({ epoch: saved.epoch, seq: saved.seq }, { epoch: "E1", seq: 2 });
  const again = setup({ url: [A, B], persist: true, storage, device: undefined });
  assert.equal(again.client.device, env.client.device);
  assert.deepEqual(again.client.position, { epoch: "E1", seq: 2 });
});

/** Open on A (welcomed), then end the link with `close(ws)`; returns the host of the next attempt. */
async function nextHostAfter(close, options = {}) {
  const env = setup({ url: [A, B], random: () => 0, ...options });
  env.client.connect();
  const ws = await openWs(env, 0);
  await close(ws, env);
  assert.equal(env.states.at(-1)[0], "reconnecting");
  await env.clock.advance(env.states.at(-1)[1].delayMs);
  assert.equal(env.sockets.length, 2);
  return hostOf(env.lastWs());
}

test("url list: 4011 server_shutdown and 1001 going away move to the next gateway", async () => {
  assert.equal(await nextHostAfter((ws) => ws.serverClose(4011, "server_shutdown")), "gw-b.test:8002");
  assert.equal(await nextHostAfter((ws) => ws.serverClose(1001, "")), "gw-b.test:8002");
});

test("url list: other closes from a live server reconnect to the same gateway", async () => {
  for (const code of [1009, 4002, 4004, 4008, 4009, 4010, 4012, 4013, 4500, 4503, 1011]) {
    const host = await nextHostAfter((ws) => ws.serverClose(code, ""), { getToken: async () => "t", token: undefined });
    assert.equal(host, "gw-a.test:8001", `close ${code}`);
  }
});

test("url list: our own heartbeat timeout retries the same gateway; a welcome timeout moves on", async () => {
  const env = setup({ url: [A, B], random: () => 0, transports: ["websocket"], connectTimeoutMs: 5000 });
  env.client.connect();
  await openWs(env, 0, { heartbeat: 10 });
  await env.clock.advance(25000); // silence: local 4012 after a healthy run
  assert.equal(env.states.at(-1)[1].code, 4012);
  await env.clock.advance(env.states.at(-1)[1].delayMs);
  assert.equal(hostOf(env.lastWs()), "gw-a.test:8001");
  env.lastWs().open(); // A accepts the socket but never says welcome (hung, or blackholed)
  await env.clock.advance(5000);
  const [state, info] = env.states.at(-1);
  assert.equal(state, "reconnecting");
  assert.equal(info.code, 4013);
  await env.clock.advance(info.delayMs);
  assert.equal(hostOf(env.lastWs()), "gw-b.test:8002", "a replica that never welcomes is left");
});

test("url list: validation", () => {
  const base = { token: "t", WebSocket: class {}, EventSource: class {} };
  assert.throws(() => new TaskSyncClient({ ...base, url: [] }), /url is required/);
  assert.throws(() => new TaskSyncClient({ ...base, url: [A, ""] }), /url is required/);
  assert.throws(() => new TaskSyncClient({ ...base, url: [A, "ftp://x"] }), /unsupported url scheme/);
  const c = new TaskSyncClient({ ...base, url: `${A}/`, random: () => 0 });
  assert.equal(c.url, A, "a single string works as before");
});
