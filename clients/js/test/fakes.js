// Fake platform for the tests: a manual clock, scriptable WebSocket/EventSource, a recording
// fetch and an in-memory Storage. Nothing here touches the network or real timers.

import { TaskSyncClient } from "../src/index.js";

/** Let pending promise callbacks run (token hooks, fetch responses, ...). */
export async function settle() {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

export class FakeClock {
  constructor() {
    this.t = 0;
    this.seq = 0;
    this.timers = new Map();
    this.setTimeout = (fn, ms = 0) => {
      const id = ++this.seq;
      this.timers.set(id, { id, at: this.t + Math.max(0, Number(ms) || 0), fn, ms });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
    this.now = () => this.t;
  }

  /** Delays (ms from now) of pending timers, soonest first. */
  pending() {
    return [...this.timers.values()].sort((a, b) => a.at - b.at || a.id - b.id).map((x) => x.at - this.t);
  }

  /** Move time forward, running every timer that falls due, in order. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await settle();
      let next = null;
      for (const tm of this.timers.values()) {
        if (tm.at <= end && (!next || tm.at < next.at || (tm.at === next.at && tm.id < next.id))) next = tm;
      }
      if (!next) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
    }
    this.t = end;
    await settle();
  }
}

export function makeWebSocketClass(instances) {
  return class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.clientClose = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      instances.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error("InvalidStateError");
      this.sent.push(data);
    }

    close(code = 1000, reason = "") {
      if (this.readyState >= 2) return;
      this.readyState = 2;
      this.clientClose = { code, reason };
      queueMicrotask(() => {
        this.readyState = 3;
        this.onclose?.({ code, reason, wasClean: true });
      });
    }

    // -- server side ------------------------------------------------------------
    get params() {
      return new URL(this.url).searchParams;
    }

    get frames() {
      return this.sent.map((x) => JSON.parse(x));
    }

    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(frame) {
      this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }

    /** Network failure: error then close 1006 (never opened, or dropped). */
    fail(code = 1006) {
      this.readyState = 3;
      this.onerror?.({});
      this.onclose?.({ code, reason: "", wasClean: false });
    }

    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean: true });
    }
  };
}

export function makeEventSourceClass(instances) {
  return class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.closed = false;
      this.onopen = this.onmessage = this.onerror = null;
      instances.push(this);
    }

    close() {
      this.readyState = 2;
      this.closed = true;
    }

    get params() {
      return new URL(this.url).searchParams;
    }

    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(frame, id = "") {
      this.onmessage?.({ data: JSON.stringify(frame), lastEventId: id });
    }

    /** readyState 0: the browser will reconnect by itself; 2: it gave up. */
    error(readyState = 0) {
      this.readyState = readyState;
      this.onerror?.({});
    }
  };
}

export function makeFetch(calls, respond = () => ({ status: 200, body: { ok: true } })) {
  return async (url, init = {}) => {
    const call = { url, init, body: init.body ? JSON.parse(init.body) : undefined };
    calls.push(call);
    const { status, body } = respond(call);
    return { ok: status >= 200 && status < 300, status, json: async () => body };
  };
}

export class MemoryStorage {
  constructor(init = {}) {
    this.map = new Map(Object.entries(init));
  }

  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }

  setItem(k, v) {
    this.map.set(k, String(v));
  }

  removeItem(k) {
    this.map.delete(k);
  }
}

/** A client wired to fakes. Returns the client plus everything needed to drive it. */
export function setup(options = {}) {
  const clock = new FakeClock();
  const sockets = [];
  const sources = [];
  const calls = [];
  const states = [];
  const errors = [];
  const env = {
    clock,
    sockets,
    sources,
    calls,
    states,
    errors,
    WebSocket: makeWebSocketClass(sockets),
    EventSource: makeEventSourceClass(sources),
  };
  const { respond, ...rest } = options;
  const client = new TaskSyncClient({
    url: "http://gw.test:8001",
    token: "tok-1",
    device: "dev-1",
    WebSocket: env.WebSocket,
    EventSource: env.EventSource,
    fetch: makeFetch(calls, respond),
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    ...rest,
  });
  client.onState((s, info) => states.push([s, info]));
  client.onError((f) => errors.push(f));
  env.client = client;
  env.lastWs = () => sockets[sockets.length - 1];
  env.lastEs = () => sources[sources.length - 1];
  return env;
}

export function welcome(seq = 0, extra = {}) {
  return { type: "welcome", conn_id: "c-1", epoch: "E1", seq, heartbeat: 15, resumed: false, ...extra };
}

export function ev(seq, type = "task_created", data = { id: seq }) {
  return { type, seq, id: `ev-${seq}`, data };
}

/** A broadcast event (the shared stream): `bseq` instead of `seq`. */
export function bev(bseq, type = "task_created", data = { id: `b${bseq}` }) {
  return { type, bseq, id: `bev-${bseq}`, data };
}

/** Open the client's latest WebSocket and answer with a welcome at `seq`. */
export async function openWs(env, seq = 0, extra = {}) {
  await settle();
  const ws = env.lastWs();
  ws.open();
  ws.receive(welcome(seq, extra));
  return ws;
}

/** Fail `n` WebSocket attempts (never opened), advancing through each backoff delay. */
export async function failWs(env, n) {
  for (let i = 0; i < n; i++) {
    await settle();
    env.lastWs().fail();
    await env.clock.advance(env.states.at(-1)[1].delayMs);
  }
}

/** Open the client's latest EventSource and answer with a welcome at `seq` (SSE id: the resume
 * point of the welcome, with the broadcast stream's when `extra` has one). */
export async function openSse(env, seq = 0, extra = {}) {
  await settle();
  const es = env.lastEs();
  es.open();
  const id = `E1:${seq}` + ("bepoch" in extra ? `,${extra.bepoch}:${extra.bseq}` : "");
  es.receive(welcome(seq, { conn_id: "c-9", ...extra }), id);
  return es;
}

/** Every event the client emits, as "u<seq>" (user stream) or "b<bseq>" (broadcasts). */
export function recordEvents(env) {
  const got = [];
  env.client.on("*", (e) => got.push("bseq" in e ? `b${e.bseq}` : `u${e.seq}`));
  return got;
}
