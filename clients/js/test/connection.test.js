import { test } from "node:test";
import assert from "node:assert/strict";
import { TaskSyncClient } from "../src/index.js";
import { setup, settle, welcome, ev, openWs } from "./fakes.js";

test("first connect: ws URL derived from http URL, token/device query, JSON subprotocol, no since", async () => {
  const env = setup();
  env.client.connect();
  await settle();
  const ws = env.lastWs();
  const u = new URL(ws.url);
  assert.equal(u.protocol, "ws:");
  assert.equal(u.host, "gw.test:8001");
  assert.equal(u.pathname, "/ws");
  assert.equal(u.searchParams.get("token"), "tok-1");
  assert.equal(u.searchParams.get("device"), "dev-1");
  assert.equal(u.searchParams.has("since"), false);
  assert.deepEqual(ws.protocols, ["tasksync.json.v1"]);
  assert.equal(env.client.state, "connecting");
  ws.open();
  ws.receive(welcome(5));
  assert.equal(env.client.state, "open");
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 5 });
  assert.equal(env.client.transport, "websocket");
});

test("https base URL maps to wss and keeps a path prefix", async () => {
  const env = setup({ url: "https://example.org/gateway/" });
  env.client.connect();
  await settle();
  assert.match(env.lastWs().url, /^wss:\/\/example\.org\/gateway\/ws\?/);
});

test("backoff grows exponentially within jitter bounds and is capped", async () => {
  let r = 0.5;
  const env = setup({ transports: ["websocket"], random: () => r });
  env.client.connect();
  const bases = [250, 500, 1000, 2000, 4000, 8000, 10000, 10000];
  const rs = [0, 0.999, 0.5, 0.25, 0, 0.999, 0, 0.999];
  for (let i = 0; i < bases.length; i++) {
    await settle();
    r = rs[i];
    env.lastWs().fail();
    const [state, info] = env.states.at(-1);
    assert.equal(state, "reconnecting");
    assert.equal(info.attempt, i + 1);
    assert.ok(info.delayMs <= bases[i], `attempt ${i + 1}: ${info.delayMs} <= ${bases[i]}`);
    assert.ok(info.delayMs >= bases[i] * 0.5, `attempt ${i + 1}: ${info.delayMs} >= ${bases[i] * 0.5}`);
    if (rs[i] === 0) assert.equal(info.delayMs, bases[i]);
    if (rs[i] === 0.5) assert.equal(info.delayMs, bases[i] * 0.75);
    assert.ok(env.clock.pending().includes(info.delayMs), "reconnect timer uses the reported delay");
    const before = env.sockets.length;
    await env.clock.advance(info.delayMs - 1);
    assert.equal(env.sockets.length, before, "no reconnect before the delay");
    await env.clock.advance(1);
    assert.equal(env.sockets.length, before + 1, "reconnect once the delay has passed");
  }
});

test("backoff resets after a welcome", async () => {
  const env = setup({ transports: ["websocket"], random: () => 0 });
  env.client.connect();
  for (let i = 0; i < 3; i++) {
    await settle();
    env.lastWs().fail();
    await env.clock.advance(env.states.at(-1)[1].delayMs);
  }
  assert.equal(env.states.at(-1)[1].delayMs, 1000);
  const ws = await openWs(env, 0);
  ws.serverClose(4500, "internal_error");
  const [state, info] = env.states.at(-1);
  assert.equal(state, "reconnecting");
  assert.equal(info.attempt, 1);
  assert.equal(info.delayMs, 250);
  assert.equal(info.code, 4500);
});

test("reconnect resumes with since=epoch:seq of the last processed event", async () => {
  const env = setup();
  env.client.connect();
  const ws = await openWs(env, 10);
  ws.receive(ev(11));
  ws.receive(ev(12));
  ws.serverClose(4500);
  await env.clock.advance(10000);
  const ws2 = env.lastWs();
  assert.notEqual(ws2, ws);
  assert.equal(ws2.params.get("since"), "E1:12");
  assert.equal(ws2.params.get("device"), "dev-1");
});

test("4002 token_expired calls the token hook at once and reconnects with the new token", async () => {
  let n = 0;
  const env = setup({ token: undefined, getToken: async () => `tok-${++n}` });
  env.client.connect();
  const ws = await openWs(env);
  assert.equal(n, 1);
  assert.equal(ws.params.get("token"), "tok-1");
  ws.serverClose(4002, "token_expired");
  await settle();
  assert.equal(n, 2, "hook called right after the close, before the backoff delay");
  assert.equal(env.states.at(-1)[0], "reconnecting");
  await env.clock.advance(10000);
  assert.equal(env.lastWs().params.get("token"), "tok-2");
  assert.equal(n, 2, "the refreshed token is used; no second call for the same reconnect");
});

test("4002 token_expired backs off like any reconnect: the table says 'refresh, then reconnect', not 'at once'", async () => {
  const env = setup({ token: undefined, getToken: async () => "fresh", random: () => 0 });
  env.client.connect();
  const ws = await openWs(env);
  ws.serverClose(4002, "token_expired");
  const [state, info] = env.states.at(-1);
  assert.equal(state, "reconnecting");
  assert.equal(info.code, 4002);
  assert.equal(info.delayMs, 250, "first backoff step, no immediate reconnect");
  await env.clock.advance(249);
  assert.equal(env.sockets.length, 1);
  await env.clock.advance(1);
  assert.equal(env.sockets.length, 2);
});

test("4002 with a fixed token string stops: it cannot be refreshed, a reconnect would get 4002 again", async () => {
  const env = setup(); // token: "tok-1", a string
  env.client.connect();
  const ws = await openWs(env);
  ws.serverClose(4002, "token_expired");
  assert.deepEqual(env.states.at(-1), ["closed", {
    transport: "websocket", attempt: 0, code: 4002, reason: "token_expired_no_get_token",
  }]);
  assert.equal(env.client.state, "closed");
  assert.equal(env.clock.pending().length, 0, "no timers left behind");
  await env.clock.advance(120000);
  assert.equal(env.sockets.length, 1, "no new socket");
});

test("token may be an async function, called before every connect", async () => {
  let n = 0;
  const env = setup({ token: async () => `t${++n}` });
  env.client.connect();
  const ws = await openWs(env);
  ws.serverClose(4500);
  await env.clock.advance(10000);
  assert.equal(env.lastWs().params.get("token"), "t2");
  assert.equal(n, 2);
});

for (const [code, name] of [[4001, "unauthorized"], [4003, "forbidden_origin"], [1000, "normal"]]) {
  test(`no reconnect on server close ${code}`, async () => {
    const env = setup();
    env.client.connect();
    const ws = await openWs(env);
    ws.serverClose(code, name);
    const [state, info] = env.states.at(-1);
    assert.equal(state, "closed");
    assert.equal(info.code, code);
    assert.equal(info.reason, name);
    assert.equal(env.client.state, "closed");
    await env.clock.advance(120000);
    assert.equal(env.sockets.length, 1, "no new socket");
    assert.equal(env.clock.pending().length, 0, "no timers left behind");
  });
}

test("4010/4011 reconnect immediately, once in a row; then back off", async () => {
  const env = setup({ random: () => 0 });
  env.client.connect();
  let ws = await openWs(env);
  ws.serverClose(4011, "server_shutdown");
  assert.equal(env.states.at(-1)[1].delayMs, 0);
  await env.clock.advance(0);
  assert.equal(env.sockets.length, 2, "reconnected without waiting");
  ws = env.lastWs();
  ws.open();
  ws.serverClose(4010, "slow_consumer");
  assert.equal(env.states.at(-1)[1].delayMs, 500, "second immediate close in a row backs off");
  await env.clock.advance(500);
  ws = await openWs(env);
  ws.serverClose(4010, "slow_consumer");
  assert.equal(env.states.at(-1)[1].delayMs, 0, "welcome re-arms the immediate reconnect");
});

test("client close() flushes the pending ack, closes with 1000 and never reconnects", async () => {
  const env = setup();
  env.client.connect();
  const ws = await openWs(env);
  ws.receive(ev(1));
  ws.receive(ev(2));
  env.client.close();
  assert.deepEqual(ws.frames, [{ type: "ack", seq: 2 }]);
  assert.deepEqual(ws.clientClose, { code: 1000, reason: "client closed" });
  assert.deepEqual(env.states.at(-1), ["closed", { transport: "websocket", attempt: 0, code: 1000, reason: "client_closed" }]);
  await env.clock.advance(60000);
  assert.equal(env.sockets.length, 1);
  assert.equal(env.client.state, "closed");
});

test("pong answers ping; silence for 2.5 x heartbeat reconnects", async () => {
  const env = setup();
  env.client.connect();
  const ws = await openWs(env, 0, { heartbeat: 10 });
  await env.clock.advance(20000);
  ws.receive({ type: "ping", ts: 1234.5 });
  assert.deepEqual(ws.frames.at(-1), { type: "pong", ts: 1234.5 });
  await env.clock.advance(24000); // 44s total, 24s since the ping: still alive
  assert.equal(env.client.state, "open");
  await env.clock.advance(1000); // 25s of silence
  const [state, info] = env.states.at(-1);
  assert.equal(state, "reconnecting");
  assert.equal(info.code, 4012);
  assert.equal(ws.clientClose.code, 1000, "dead socket closed by the client");
});

test("onState transitions over a session", async () => {
  const env = setup({ random: () => 0 });
  env.client.connect();
  let ws = await openWs(env);
  ws.serverClose(4500, "internal_error");
  await env.clock.advance(250);
  ws = await openWs(env);
  env.client.close();
  assert.deepEqual(env.states.map(([s]) => s), ["connecting", "open", "reconnecting", "open", "closed"]);
  assert.deepEqual(env.states[2][1], {
    transport: "websocket", attempt: 1, code: 4500, reason: "internal_error", delayMs: 250,
  });
  assert.equal(env.states[0][1].transport, "websocket");
});

test("a socket that never says welcome times out and counts as a failure", async () => {
  const env = setup({ transports: ["websocket"], connectTimeoutMs: 5000, random: () => 0 });
  env.client.connect();
  await settle();
  env.lastWs().open();
  await env.clock.advance(5000);
  const [state, info] = env.states.at(-1);
  assert.equal(state, "reconnecting");
  assert.equal(info.code, 4013);
});

test("constructor validates options", () => {
  const base = { url: "http://x", token: "t", WebSocket: class {}, EventSource: class {} };
  assert.throws(() => new TaskSyncClient({ ...base, url: undefined }), /url/);
  assert.throws(() => new TaskSyncClient({ ...base, token: undefined }), /token/);
  assert.throws(() => new TaskSyncClient({ ...base, encoding: "msgpack" }), /json only/);
  assert.throws(() => new TaskSyncClient({ ...base, device: "bad device!" }), /device/);
  assert.throws(() => new TaskSyncClient({ ...base, transports: ["carrier-pigeon"] }), /transports/);
  assert.throws(() => new TaskSyncClient({ ...base, filters: { colour: ["red"] } }), /unknown filter key/);
  const c = new TaskSyncClient({ ...base, random: () => 0 });
  assert.match(c.device, /^[a-z0-9]{16}$/);
  assert.equal(c.state, "closed");
  assert.equal(c.position, null);
});
