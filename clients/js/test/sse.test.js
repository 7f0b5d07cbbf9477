import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, settle, welcome, ev, failWs, openSse } from "./fakes.js";

test("falls back to SSE after wsFailuresBeforeFallback WebSocket failures", async () => {
  const env = setup({ wsFailuresBeforeFallback: 3 });
  env.client.connect();
  await failWs(env, 2);
  assert.equal(env.sources.length, 0, "two failures: still WebSocket");
  assert.equal(env.sockets.length, 3);
  await failWs(env, 1);
  assert.equal(env.sources.length, 1);
  const u = new URL(env.lastEs().url);
  assert.equal(u.origin + u.pathname, "http://gw.test:8001/sse");
  assert.equal(u.searchParams.get("token"), "tok-1");
  assert.equal(u.searchParams.get("device"), "dev-1");
  await openSse(env);
  assert.equal(env.client.transport, "sse");
  assert.deepEqual(env.states.at(-1), ["open", { transport: "sse", attempt: 0 }]);
});

test("WebSockets that open and get a close code do not count towards the fallback", async () => {
  const env = setup({ random: () => 0 });
  env.client.connect();
  for (let i = 0; i < 4; i++) {
    await settle();
    env.lastWs().open();
    env.lastWs().serverClose(4503, "unavailable");
    await env.clock.advance(env.states.at(-1)[1].delayMs);
  }
  assert.equal(env.sources.length, 0);
});

test("a WebSocket that opens and drops without a close frame before welcome counts towards the fallback", async () => {
  const env = setup({ random: () => 0 });
  env.client.connect();
  for (let i = 0; i < 2; i++) {
    await settle();
    env.lastWs().open(); // e.g. a proxy that takes the upgrade, then cuts the connection
    env.lastWs().fail(1006);
    await env.clock.advance(env.states.at(-1)[1].delayMs);
  }
  assert.equal(env.sources.length, 1, "two path failures: SSE");
  assert.equal(env.sockets.length, 2);
});

test("SSE: token_expired with a fixed token string stops", async () => {
  const env = setup({ transports: ["sse"] });
  env.client.connect();
  const es = await openSse(env);
  es.receive({ type: "error", code: "token_expired", message: "x" });
  assert.equal(es.closed, true);
  assert.deepEqual(env.states.at(-1)[1].reason, "token_expired_no_get_token");
  assert.equal(env.client.state, "closed");
  await env.clock.advance(60000);
  assert.equal(env.sources.length, 1);
});

test("SSE resumes with since, and acks go by POST with a Bearer header", async () => {
  const env = setup({ transports: ["sse"] });
  env.client.connect();
  const es = await openSse(env, 4);
  assert.equal(es.params.has("since"), false);
  es.receive(ev(5), "E1:5");
  es.receive(ev(6), "E1:6");
  es.receive(ev(7), "E1:7");
  await env.clock.advance(500);
  assert.equal(env.calls.length, 1, "one coalesced ack");
  const [call] = env.calls;
  assert.equal(call.url, "http://gw.test:8001/sse/c-9/ack");
  assert.equal(call.init.method, "POST");
  assert.equal(call.init.headers.Authorization, "Bearer tok-1");
  assert.equal(call.init.headers["Content-Type"], "application/json");
  assert.deepEqual(call.body, { seq: 7 });
  es.error(2); // the browser gave up (e.g. HTTP error): our backoff takes over
  assert.equal(es.closed, true);
  assert.equal(env.states.at(-1)[0], "reconnecting");
  await env.clock.advance(10000);
  assert.equal(env.sources.length, 2);
  assert.equal(env.lastEs().params.get("since"), "E1:7");
});

test("SSE: a reconnectable error frame closes the stream and reconnects through the client", async () => {
  const env = setup({ transports: ["sse"] });
  env.client.connect();
  const es = await openSse(env, 2);
  es.receive({ type: "error", code: "slow_consumer", message: "x" });
  assert.equal(es.closed, true);
  const [state, info] = env.states.at(-1);
  assert.equal(state, "reconnecting");
  assert.equal(info.code, 4010);
  assert.equal(info.delayMs, 0, "4010 reconnects at once");
  await env.clock.advance(0);
  assert.equal(env.sources.length, 2);
  assert.equal(env.lastEs().params.get("since"), "E1:2");
  assert.equal(env.errors.at(-1).code, "slow_consumer");
});

test("SSE: token_expired error frame calls the token hook", async () => {
  let n = 0;
  const env = setup({ transports: ["sse"], token: undefined, getToken: () => `tok-${++n}` });
  env.client.connect();
  const es = await openSse(env);
  es.receive({ type: "error", code: "token_expired", message: "x" });
  await settle();
  assert.equal(n, 2);
  await env.clock.advance(10000);
  assert.equal(env.lastEs().params.get("token"), "tok-2");
});

test("SSE: 'unavailable' is only a close when the stream ends after it", async () => {
  const env = setup({ transports: ["sse"] });
  env.client.connect();
  const es = await openSse(env);
  es.receive({ type: "error", code: "unavailable", message: "could not store filters" });
  es.receive(ev(1), "E1:1");
  es.error(0);
  assert.equal(es.closed, false, "stream went on after the error: the browser reconnect is left alone");
  assert.equal(env.states.at(-1)[1].code, undefined);
  es.receive(welcome(1, { conn_id: "c-10" }), "E1:1");
  assert.equal(env.client.state, "open");
  es.receive({ type: "error", code: "unavailable", message: "session store down" });
  es.error(0);
  assert.equal(es.closed, true);
  assert.equal(env.states.at(-1)[1].code, 4503);
});

test("SSE: unauthorized error frame closes for good", async () => {
  const env = setup({ transports: ["sse"] });
  env.client.connect();
  const es = await openSse(env);
  es.receive({ type: "error", code: "unauthorized", message: "x" });
  assert.equal(es.closed, true);
  assert.deepEqual(env.states.at(-1)[0], "closed");
  await env.clock.advance(60000);
  assert.equal(env.sources.length, 1);
});

test("SSE: one browser auto-reconnect is allowed; a second error goes to backoff", async () => {
  const env = setup({ transports: ["sse"] });
  env.client.connect();
  const es = await openSse(env, 1);
  es.error(0);
  assert.equal(es.closed, false);
  assert.equal(env.client.state, "reconnecting");
  es.receive(welcome(1, { conn_id: "c-11" }), "E1:1");
  es.receive(ev(2), "E1:2");
  await env.clock.advance(500);
  assert.equal(env.calls.at(-1).url, "http://gw.test:8001/sse/c-11/ack", "acks use the new conn_id");
  es.error(0);
  es.error(0);
  assert.equal(es.closed, true);
  await env.clock.advance(10000);
  assert.equal(env.sources.length, 2);
});

test("SSE subscribe/unsubscribe go by POST", async () => {
  const env = setup({ transports: ["sse"], filters: { types: ["task_deleted"] } });
  env.client.connect();
  await openSse(env);
  await settle();
  assert.equal(env.calls[0].url, "http://gw.test:8001/sse/c-9/subscribe");
  assert.deepEqual(env.calls[0].body, { filters: { types: ["task_deleted"] }, scope: "connection" });
  assert.equal(await env.client.unsubscribe({ scope: "user" }), true);
  assert.equal(env.calls[1].url, "http://gw.test:8001/sse/c-9/unsubscribe");
  assert.deepEqual(env.calls[1].body, { scope: "user" });
  assert.equal(env.calls[1].init.headers.Authorization, "Bearer tok-1");
});

test("SSE POST failures are reported and the ack is retried later", async () => {
  let status = 404;
  const env = setup({ transports: ["sse"], respond: () => ({ status, body: { type: "error", code: "not_found", message: "gone" } }) });
  env.client.connect();
  const es = await openSse(env);
  es.receive(ev(1), "E1:1");
  await env.clock.advance(500);
  assert.equal(env.errors.at(-1).code, "not_found");
  status = 200;
  es.receive(ev(2), "E1:2");
  await env.clock.advance(500);
  assert.deepEqual(env.calls.map((c) => c.body.seq), [1, 2]);
});

test("returns to WebSocket after retryWebSocketAfterMs without handling any event twice", async () => {
  const env = setup({ retryWebSocketAfterMs: 60000 });
  const got = [];
  env.client.on("*", (e) => got.push(e.seq));
  env.client.connect();
  await failWs(env, 2);
  const es = await openSse(env, 0);
  for (const s of [1, 2, 3]) es.receive(ev(s), `E1:${s}`);
  const wsCount = env.sockets.length;
  await env.clock.advance(59000);
  assert.equal(env.sockets.length, wsCount, "not before the retry delay");
  await env.clock.advance(1000);
  assert.equal(env.sockets.length, wsCount + 1, "WebSocket probe opened");
  const ws = env.lastWs();
  assert.equal(ws.params.get("since"), "E1:3");
  // SSE keeps delivering while the WebSocket handshakes.
  es.receive(ev(4), "E1:4");
  es.receive(ev(5), "E1:5");
  assert.equal(es.closed, false);
  assert.equal(env.client.transport, "sse");
  ws.open();
  ws.receive(welcome(3, { conn_id: "c-ws" }));
  assert.equal(es.closed, true, "SSE closed once the WebSocket said welcome");
  assert.equal(env.client.transport, "websocket");
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 5 }, "welcome never moves the position back");
  // The WebSocket replays from its since: 4 and 5 again, then new ones.
  for (const s of [4, 5, 6]) ws.receive(ev(s));
  es.receive(ev(7), "E1:7"); // a late SSE frame after the switch is ignored
  ws.receive(ev(7));
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7]);
  await env.clock.advance(500);
  assert.deepEqual(ws.frames.at(-1), { type: "ack", seq: 7 });
  assert.deepEqual(env.states.at(-1), ["open", { transport: "websocket", attempt: 0 }]);
  // Later drops reconnect over WebSocket again.
  ws.serverClose(4500);
  await env.clock.advance(10000);
  assert.equal(env.sockets.length, wsCount + 2);
  assert.equal(env.sources.length, 1);
});

test("a failed WebSocket probe keeps SSE and tries again later", async () => {
  const env = setup({ retryWebSocketAfterMs: 30000 });
  env.client.connect();
  await failWs(env, 2);
  const es = await openSse(env);
  await env.clock.advance(30000);
  const n = env.sockets.length;
  env.lastWs().fail();
  assert.equal(es.closed, false);
  assert.equal(env.client.state, "open");
  assert.equal(env.client.transport, "sse");
  await env.clock.advance(30000);
  assert.equal(env.sockets.length, n + 1, "second probe");
});
