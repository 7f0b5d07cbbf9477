// TaskSync browser client: one plain ES module, no dependencies, no build step.
//
// Speaks the client protocol of docs/protocol.md over WebSocket (/ws, JSON frames) with a
// Server-Sent Events fallback (/sse + small authenticated POSTs). Keeps the resume position
// (epoch:seq), reconnects with jittered exponential backoff following the close-code catalogue,
// coalesces acks and drops duplicate events. Every platform object (WebSocket, EventSource,
// fetch, timers, random, clock, storage) can be injected, which is how the Node tests run it.

export const SUBPROTOCOL_JSON = "tasksync.json.v1";

export const EVENT_TYPES = Object.freeze([
  "task_created", "task_updated", "task_deleted", "task_completed",
]);

/** Close-code catalogue (docs/protocol.md "Close codes"). */
export const CLOSE_CODES = Object.freeze(Object.fromEntries([
  [1000, "normal", false, "closed on purpose"],
  [1009, "frame_too_large", true, "fix the sender, reconnect"],
  [4001, "unauthorized", false, "get a valid token first"],
  [4002, "token_expired", true, "refresh the token, then reconnect"],
  [4003, "forbidden_origin", false, "page origin not allowed"],
  [4004, "protocol_error", true, "repeated malformed frames; reconnect with backoff"],
  [4008, "rate_limited", true, "back off, reconnect"],
  [4009, "too_many_connections", true, "back off (another device/tab must close first)"],
  [4010, "slow_consumer", true, "reconnect at once and resume: nothing is lost"],
  [4011, "server_shutdown", true, "replica going away: reconnect (any replica) at once and resume"],
  [4012, "heartbeat_timeout", true, "no frame within the heartbeat timeout"],
  [4013, "handshake_timeout", true, "handshake too slow"],
  [4500, "internal_error", true, "back off, reconnect"],
  [4503, "unavailable", true, "session store unreachable, back off"],
].map(([code, name, reconnect, action]) => [code, Object.freeze({
  code, name, reconnect, resume: reconnect, action,
})])));

const CLOSE_BY_NAME = Object.fromEntries(Object.values(CLOSE_CODES).map((c) => [c.name, c]));
// Reconnect at once (no backoff) once in a row for these.
const IMMEDIATE_CODES = new Set([4010, 4011]);
// SSE error-frame codes that are also ordinary (non-closing) error codes: only treat them as a
// close when the stream actually ends after them.
const AMBIGUOUS_SSE_CODES = new Set(["frame_too_large", "rate_limited", "unavailable"]);
const DEVICE_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const FILTER_KEYS = ["types", "task_ids", "list_ids"];
const TRANSPORTS = ["websocket", "sse"];
const EVENTSOURCE_CLOSED = 2;
const WS_OPEN = 1;

const DEFAULT_BACKOFF = Object.freeze({ initialMs: 250, maxMs: 10000, factor: 2, jitter: 0.5 });

function isThenable(v) {
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof v.then === "function";
}

function isSeq(v) {
  return Number.isSafeInteger(v) && v >= 0;
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null; // the getter itself throws in sandboxed frames
  } catch {
    return null;
  }
}

function randomId(random, n = 16) {
  const abc = "abcdefghijklmnopqrstuvwxyz0123456789";
  let s = "";
  for (let i = 0; i < n; i++) s += abc[Math.floor(random() * abc.length) % abc.length];
  return s;
}

/** Validate and copy a filter object {types?, task_ids?, list_ids?}. */
export function normalizeFilters(filters) {
  if (filters === null || typeof filters !== "object" || Array.isArray(filters)) {
    throw new TypeError("filters must be an object {types?, task_ids?, list_ids?}");
  }
  const out = {};
  for (const key of Object.keys(filters)) {
    if (!FILTER_KEYS.includes(key)) throw new TypeError(`unknown filter key ${JSON.stringify(key)}`);
  }
  for (const key of FILTER_KEYS) {
    const v = filters[key];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v)) throw new TypeError(`filters.${key} must be an array`);
    if (key === "types") {
      for (const t of v) {
        if (typeof t !== "string") throw new TypeError("filters.types items must be strings");
      }
      out.types = [...v];
    } else {
      out[key] = v.map((x) => {
        if (typeof x !== "string" && typeof x !== "number") {
          throw new TypeError(`filters.${key} items must be strings or numbers`);
        }
        return String(x);
      });
    }
  }
  return out;
}

/** One gateway: the base URL as given plus its http(s):// and ws(s):// forms. */
function endpointOf(url) {
  const base = String(url).replace(/\/+$/, "");
  const u = new URL(base);
  const httpProto = { "http:": "http:", "https:": "https:", "ws:": "http:", "wss:": "https:" }[u.protocol];
  if (!httpProto) throw new TypeError(`unsupported url scheme ${u.protocol}`);
  const path = u.pathname.replace(/\/+$/, "");
  return {
    base,
    http: `${httpProto}//${u.host}${path}`,
    ws: `${httpProto === "https:" ? "wss:" : "ws:"}//${u.host}${path}`,
  };
}

function checkScope(scope) {
  if (scope !== "connection" && scope !== "user") {
    throw new TypeError('scope must be "connection" or "user"');
  }
  return scope;
}

export class TaskSyncClient {
  constructor(options = {}) {
    const o = options;
    // One gateway URL or a list of equivalent ones (replicas): every reconnect after a lost or
    // failed connection moves on to the next one, round-robin.
    const urls = Array.isArray(o.url) ? o.url : [o.url];
    if (urls.length === 0 || urls.some((x) => !x)) throw new TypeError("url is required");
    this._endpoints = urls.map(endpointOf);
    this._endpointIndex = 0;
    this._base = this._endpoints[0].base; // names the storage key: the first URL

    if (o.getToken !== undefined && typeof o.getToken !== "function") {
      throw new TypeError("getToken must be a function");
    }
    if (o.getToken === undefined && (o.token === undefined || o.token === null)) {
      throw new TypeError("token or getToken is required");
    }
    this._tokenSource = o.getToken ?? o.token;
    this._token = typeof o.token === "string" ? o.token : null;
    this._tokenPromise = null;

    const encoding = o.encoding ?? "json";
    if (encoding !== "json") throw new TypeError(`encoding ${JSON.stringify(encoding)} is not supported (json only)`);

    // Platform objects: injected or the globals. Called unbound (browsers reject a foreign `this`).
    const WS = "WebSocket" in o ? o.WebSocket : globalThis.WebSocket;
    const ES = "EventSource" in o ? o.EventSource : globalThis.EventSource;
    const fetchFn = o.fetch ?? globalThis.fetch;
    const setT = o.setTimeout ?? globalThis.setTimeout;
    const clearT = o.clearTimeout ?? globalThis.clearTimeout;
    this._WebSocket = WS;
    this._EventSource = ES;
    this._fetch = (...a) => fetchFn(...a);
    this._setTimeout = (fn, ms) => setT(fn, ms);
    this._clearTimeout = (id) => clearT(id);
    this._random = o.random ?? Math.random;
    this._now = o.now ?? Date.now;

    const wanted = o.transports ?? TRANSPORTS;
    if (!Array.isArray(wanted) || wanted.length === 0 || wanted.some((t) => !TRANSPORTS.includes(t))) {
      throw new TypeError('transports must be a non-empty array of "websocket" and/or "sse"');
    }
    this._transports = [...new Set(wanted)].filter((t) => (t === "websocket" ? !!WS : !!ES));
    if (this._transports.length === 0) {
      throw new Error("no usable transport: inject WebSocket and/or EventSource");
    }
    this._primary = this._transports[0];
    this._next = this._primary;
    this._wsFallback = this._primary === "websocket" && this._transports.includes("sse");

    this._wsFailuresBeforeFallback = o.wsFailuresBeforeFallback ?? 2;
    this._retryWebSocketAfterMs = o.retryWebSocketAfterMs ?? 60000;
    this._backoff = { ...DEFAULT_BACKOFF, ...(o.backoff ?? {}) };
    this._ackIntervalMs = o.ackIntervalMs ?? 500;
    this._connectTimeoutMs = o.connectTimeoutMs ?? 15000;
    this._heartbeatFactor = 2.5;

    this._handlers = new Map();
    this._resyncHandlers = new Set();
    this._stateHandlers = new Set();
    this._errorHandlers = new Set();

    this._connFilters = o.filters ? normalizeFilters(o.filters) : null;
    this._queued = []; // user-scope subscribe/unsubscribe waiting for a connection

    this._state = "closed";
    this._stopped = true;
    this._link = null; // the connection in use
    this._probe = null; // a WebSocket tried while on SSE
    this._opening = null; // marker of the pending main open (token fetch in flight)
    this._probeOpening = null;
    this._reconnectTimer = null;
    this._wsRetryTimer = null;
    this._ackTimer = null;
    this._ackDirty = false;
    this._attempt = 0;
    this._immediateUsed = false;
    this._wsFailures = 0;
    this._inbox = [];
    this._paused = false;
    this._draining = false;
    this._pos = null;

    // Position and device, optionally kept in (session) storage across page reloads.
    this._persist = !!o.persist;
    this._storage = o.storage ?? (this._persist ? defaultStorage() : null);
    this._storageKey = `tasksync:${this._base}`;
    let storedDevice = null;
    if (this._persist && this._storage) {
      const saved = this._load();
      if (saved) {
        storedDevice = saved.device;
        this._pos = saved.pos;
      }
    }
    const device = o.device ?? storedDevice ?? randomId(this._random);
    if (typeof device !== "string" || !DEVICE_RE.test(device)) {
      throw new TypeError("device must be 1-64 chars of [A-Za-z0-9_.:-]");
    }
    this._device = device;
    this._save();
  }

  // -- public API ------------------------------------------------------------------------

  get position() {
    return this._pos ? { epoch: this._pos.epoch, seq: this._pos.seq } : null;
  }

  get transport() {
    return this._link ? this._link.kind : this._next;
  }

  get state() {
    return this._state;
  }

  get device() {
    return this._device;
  }

  /** Base URL of the gateway in use (or tried next). */
  get url() {
    return (this._link?.endpoint ?? this._endpoints[this._endpointIndex]).base;
  }

  /** Handle events of one type ("task_created", ...) or all of them ("*"). Returns unsubscribe. */
  on(type, fn) {
    if (typeof type !== "string" || typeof fn !== "function") {
      throw new TypeError("on(type: string, handler: function)");
    }
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  onResync(fn) {
    return this._addTo(this._resyncHandlers, fn);
  }

  onState(fn) {
    return this._addTo(this._stateHandlers, fn);
  }

  onError(fn) {
    return this._addTo(this._errorHandlers, fn);
  }

  /**
   * Set filters. scope "connection" (default): kept by the client and re-sent after every
   * (re)connect. scope "user": stored by the server for the user; sent once (queued until
   * connected). Resolves true when handed to the server, false when only queued/stored.
   */
  subscribe(filters, { scope = "connection" } = {}) {
    checkScope(scope);
    const f = normalizeFilters(filters);
    if (scope === "connection") this._connFilters = f;
    return this._control({ type: "subscribe", filters: f, scope }, scope === "user");
  }

  unsubscribe({ scope = "connection" } = {}) {
    checkScope(scope);
    if (scope === "connection") this._connFilters = null;
    return this._control({ type: "unsubscribe", scope }, scope === "user");
  }

  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    this._attempt = 0;
    this._immediateUsed = false;
    this._wsFailures = 0;
    this._next = this._primary;
    this._setState("connecting", { transport: this._next, attempt: 0 });
    this._open();
    return this;
  }

  close() {
    if (this._stopped) return;
    this._clearAckTimer();
    this._flushAck(true);
    this._stopped = true;
    const transport = this.transport;
    this._teardown(1000, "client closed");
    this._setState("closed", { transport, attempt: this._attempt, code: 1000, reason: "client_closed" });
  }

  // -- connecting ------------------------------------------------------------------------

  _addTo(set, fn) {
    if (typeof fn !== "function") throw new TypeError("handler must be a function");
    set.add(fn);
    return () => set.delete(fn);
  }

  _fetchToken() {
    const p = (async () => {
      const src = this._tokenSource;
      const t = typeof src === "function" ? await src() : src;
      if (typeof t !== "string" || t === "") throw new Error("token hook returned no token");
      this._token = t;
      return t;
    })();
    p.catch(() => {}); // awaited later; don't report an early rejection as unhandled
    return p;
  }

  _takeToken() {
    const p = this._tokenPromise ?? this._fetchToken();
    this._tokenPromise = null;
    return p;
  }

  _query(token) {
    const q = new URLSearchParams();
    q.set("token", token);
    q.set("device", this._device);
    if (this._pos) q.set("since", `${this._pos.epoch}:${this._pos.seq}`);
    return q.toString();
  }

  async _open() {
    const marker = {};
    this._opening = marker;
    let token;
    try {
      token = await this._takeToken();
    } catch (e) {
      if (this._stopped || this._opening !== marker) return;
      this._opening = null;
      this._emitError({ type: "error", code: "token_error", message: String(e?.message ?? e) });
      this._scheduleReconnect({ transport: this._next, reason: "token_error" });
      return;
    }
    if (this._stopped || this._opening !== marker) return;
    this._opening = null;
    this._link = this._next === "websocket" ? this._startWs(token, false) : this._startSse(token);
  }

  _startWs(token, probe) {
    const link = this._newLink("websocket", probe);
    let ws;
    try {
      ws = new this._WebSocket(`${link.endpoint.ws}/ws?${this._query(token)}`, [SUBPROTOCOL_JSON]);
    } catch (e) {
      // Bad URL or blocked: behave like a failed connection attempt.
      this._setTimeout(() => this._linkClosed(link, undefined, String(e?.message ?? e), true), 0);
      return link;
    }
    link.socket = ws;
    ws.onopen = () => {
      if (!link.dead) link.opened = true;
    };
    ws.onmessage = (ev) => {
      if (!link.dead) this._receive(link, ev.data);
    };
    ws.onerror = () => {}; // a close event always follows
    ws.onclose = (ev) => {
      if (!link.dead) this._linkClosed(link, ev?.code, ev?.reason ?? "", false);
    };
    this._armConnectTimer(link);
    return link;
  }

  _startSse(token) {
    const link = this._newLink("sse", false);
    let es;
    try {
      es = new this._EventSource(`${link.endpoint.http}/sse?${this._query(token)}`);
    } catch (e) {
      this._setTimeout(() => this._linkClosed(link, undefined, String(e?.message ?? e), true), 0);
      return link;
    }
    link.socket = es;
    es.onopen = () => {
      if (!link.dead) link.opened = true;
    };
    es.onmessage = (ev) => {
      if (!link.dead) this._receive(link, ev.data);
    };
    es.onerror = () => {
      if (!link.dead) this._sseError(link);
    };
    this._armConnectTimer(link);
    return link;
  }

  _newLink(kind, probe) {
    return {
      kind, probe, endpoint: this._endpoints[this._endpointIndex],
      socket: null, opened: false, welcomed: false, dead: false, connId: null,
      epoch: null, heartbeatMs: 0, watchdog: null, connectTimer: null, pendingClose: null,
    };
  }

  _armConnectTimer(link) {
    if (!(this._connectTimeoutMs > 0)) return;
    link.connectTimer = this._setTimeout(() => {
      link.connectTimer = null;
      if (!link.dead && !link.welcomed) this._linkClosed(link, 4013, "handshake_timeout", true);
    }, this._connectTimeoutMs);
  }

  /** Any frame proves the WebSocket alive; nothing for 2.5 heartbeats means it is dead. */
  _kick(link) {
    if (link.kind !== "websocket" || !(link.heartbeatMs > 0) || link.dead) return;
    if (link.watchdog != null) this._clearTimeout(link.watchdog);
    link.watchdog = this._setTimeout(() => {
      link.watchdog = null;
      if (!link.dead) this._linkClosed(link, 4012, "heartbeat_timeout", true);
    }, link.heartbeatMs * this._heartbeatFactor);
  }

  /** Stop listening to a link and close its socket. */
  _kill(link, code = 1000, reason = "") {
    if (!link) return;
    link.dead = true;
    if (link.watchdog != null) this._clearTimeout(link.watchdog);
    if (link.connectTimer != null) this._clearTimeout(link.connectTimer);
    link.watchdog = link.connectTimer = null;
    const s = link.socket;
    if (!s) return;
    try {
      if (link.kind === "websocket") s.close(code, reason);
      else s.close();
    } catch {
      // already closed
    }
  }

  _linkClosed(link, code, reason, local) {
    if (link.dead) return;
    this._kill(link, 1000, local ? String(reason).slice(0, 100) : "");
    if (link === this._probe) {
      this._probe = null;
      this._scheduleWsRetry();
      return;
    }
    if (link !== this._link) return;
    this._link = null;
    this._afterClose(link, code, reason, local);
  }

  _sseError(link) {
    if (link === this._probe || link !== this._link) return;
    const es = link.socket;
    if (link.pendingClose) {
      const c = link.pendingClose;
      this._linkClosed(link, c.code, c.name, true);
    } else if (link.welcomed && es && es.readyState !== EVENTSOURCE_CLOSED) {
      // The stream ended after a healthy run; the browser reconnects by itself with
      // Last-Event-ID. Let it try once; a second error before a welcome goes to our backoff.
      link.welcomed = false;
      link.opened = false;
      link.connId = null;
      this._attempt += 1;
      this._setState("reconnecting", { transport: "sse", attempt: this._attempt, reason: "sse_error", delayMs: 0 });
      this._armConnectTimer(link);
    } else {
      this._linkClosed(link, undefined, "sse_error", true);
    }
  }

  _afterClose(link, code, reason, local) {
    if (this._stopped) return;
    const entry = code != null ? CLOSE_CODES[code] : undefined;
    const why = reason || entry?.name || "";
    this._killProbe();
    if (entry && !entry.reconnect) {
      this._stopped = true;
      this._teardown();
      this._setState("closed", { transport: link.kind, attempt: this._attempt, code, reason: why });
      return;
    }
    if (link.kind === "websocket") {
      // A WebSocket that never opened (or opened but never said welcome in time) points at the
      // network path, not at the server: count it towards the SSE fallback.
      const failed = !link.welcomed && (!link.opened || (local && code === 4013));
      if (failed) {
        this._wsFailures += 1;
        if (this._wsFallback && this._wsFailures >= this._wsFailuresBeforeFallback) {
          this._wsFailures = 0;
          this._next = "sse";
          this._scheduleWsRetry();
        }
      } else {
        this._wsFailures = 0;
      }
    }
    if (code === 4002) this._tokenPromise = this._fetchToken(); // refresh before reconnecting
    // Several gateways: try the next one (a dead replica costs one attempt, not a backoff series).
    this._endpointIndex = (this._endpointIndex + 1) % this._endpoints.length;
    this._scheduleReconnect({ transport: this._next, code, reason: why });
  }

  _backoffDelay(attempt) {
    const { initialMs, maxMs, factor, jitter } = this._backoff;
    const base = Math.min(maxMs, initialMs * factor ** Math.max(0, attempt - 1));
    const j = Math.min(1, Math.max(0, jitter));
    return Math.round(base * (1 - j * this._random()));
  }

  _scheduleReconnect(info) {
    this._attempt += 1;
    let delayMs;
    if (IMMEDIATE_CODES.has(info.code) && !this._immediateUsed) {
      this._immediateUsed = true;
      delayMs = 0;
    } else {
      delayMs = this._backoffDelay(this._attempt);
    }
    const state = { transport: this._next, attempt: this._attempt, reason: info.reason ?? "", delayMs };
    if (info.code !== undefined) state.code = info.code;
    this._setState("reconnecting", state);
    if (this._reconnectTimer != null) this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = this._setTimeout(() => {
      this._reconnectTimer = null;
      if (!this._stopped) this._open();
    }, delayMs);
  }

  // -- SSE -> WebSocket return -------------------------------------------------------------

  _scheduleWsRetry() {
    if (this._stopped || !this._wsFallback || this._wsRetryTimer != null) return;
    this._wsRetryTimer = this._setTimeout(() => {
      this._wsRetryTimer = null;
      this._retryWs();
    }, this._retryWebSocketAfterMs);
  }

  _retryWs() {
    if (this._stopped || this._probe || this._probeOpening) return;
    const link = this._link;
    if (link && link.kind === "sse" && link.welcomed) {
      this._openProbe(); // keep SSE until the WebSocket says welcome
    } else if (!link || link.kind === "sse") {
      this._next = "websocket"; // SSE isn't up either: next attempt goes back to WebSocket
    }
  }

  async _openProbe() {
    const marker = {};
    this._probeOpening = marker;
    let token;
    try {
      token = await this._takeToken();
    } catch (e) {
      if (this._probeOpening === marker) this._probeOpening = null;
      this._scheduleWsRetry();
      return;
    }
    if (this._probeOpening !== marker) return;
    this._probeOpening = null;
    if (this._stopped || !this._link || this._link.kind !== "sse") return;
    this._probe = this._startWs(token, true);
  }

  _killProbe() {
    this._probeOpening = null;
    if (this._probe) this._kill(this._probe);
    this._probe = null;
  }

  _teardown(code = 1000, reason = "") {
    this._opening = null;
    this._killProbe();
    if (this._link) this._kill(this._link, code, reason);
    this._link = null;
    for (const k of ["_reconnectTimer", "_wsRetryTimer"]) {
      if (this[k] != null) this._clearTimeout(this[k]);
      this[k] = null;
    }
    this._clearAckTimer();
    this._inbox.length = 0;
    const queued = this._queued.splice(0);
    for (const q of queued) q.resolve(false);
  }

  // -- frames ------------------------------------------------------------------------------

  _receive(link, data) {
    if (typeof data !== "string") return; // JSON encoding only
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") return;
    this._kick(link);
    switch (frame.type) {
      case "ping":
        if (link.kind === "websocket") {
          this._wsSend(link, { type: "pong", ts: typeof frame.ts === "number" ? frame.ts : this._now() / 1000 });
        }
        return;
      case "pong":
        return;
      case "error":
        this._errorFrame(link, frame);
        return;
      default:
        link.pendingClose = null; // the stream went on: a preceding error frame was not fatal
        this._inbox.push([link, frame]);
        this._drain();
    }
  }

  _drain() {
    if (this._draining) return;
    this._draining = true;
    try {
      while (this._inbox.length && !this._paused) {
        const [link, frame] = this._inbox.shift();
        this._process(link, frame);
      }
    } finally {
      this._draining = false;
    }
  }

  _process(link, frame) {
    const t = frame.type;
    if (t === "welcome") this._welcome(link, frame);
    else if (t === "resync_required") this._resync(link, frame);
    else if (t === "subscribed") {
      if (!link.dead) this._emit(this._handlers.get("subscribed"), frame);
    } else if (isSeq(frame.seq) && "data" in frame) this._event(link, frame);
  }

  _welcome(link, f) {
    if (link.dead || typeof f.epoch !== "string" || !isSeq(f.seq)) return;
    link.welcomed = true;
    link.connId = typeof f.conn_id === "string" ? f.conn_id : null;
    link.epoch = f.epoch;
    if (link.connectTimer != null) this._clearTimeout(link.connectTimer);
    link.connectTimer = null;
    if (link.probe) {
      // The WebSocket is back: switch over and drop SSE. Events the two overlap on are
      // dropped by the seq check.
      const old = this._link;
      this._link = link;
      this._probe = null;
      link.probe = false;
      if (old) this._kill(old);
    }
    if (link !== this._link) return;
    if (link.kind === "websocket" && typeof f.heartbeat === "number" && f.heartbeat > 0) {
      link.heartbeatMs = f.heartbeat * 1000;
      this._kick(link);
    }
    const p = this._pos;
    // Same epoch: never move backwards (a WebSocket welcomed while SSE was still delivering).
    if (!p || p.epoch !== f.epoch || f.seq > p.seq) this._setPos({ epoch: f.epoch, seq: f.seq });
    this._attempt = 0;
    this._immediateUsed = false;
    this._next = link.kind;
    if (link.kind === "websocket") {
      this._wsFailures = 0;
      if (this._wsRetryTimer != null) this._clearTimeout(this._wsRetryTimer);
      this._wsRetryTimer = null;
    } else if (this._wsFallback) {
      this._scheduleWsRetry();
    }
    this._setState("open", { transport: link.kind, attempt: 0 });
    if (this._connFilters) {
      this._deliver(link, { type: "subscribe", filters: this._connFilters, scope: "connection" });
    }
    for (const q of this._queued.splice(0)) {
      this._deliver(link, q.frame).then(q.resolve, () => q.resolve(false));
    }
    if (this._ackDirty) this._scheduleAck();
  }

  _event(link, f) {
    const p = this._pos;
    if (p && link.epoch !== null && link.epoch !== p.epoch && link !== this._link) return;
    if (p && (link.epoch === null || link.epoch === p.epoch) && f.seq <= p.seq) return; // duplicate
    const event = { type: f.type, seq: f.seq, id: f.id, data: f.data };
    this._emit(this._handlers.get(f.type), event);
    this._emit(this._handlers.get("*"), event);
    this._setPos({ epoch: link.epoch ?? p?.epoch ?? null, seq: f.seq });
    this._ackDirty = true;
    this._scheduleAck();
  }

  _resync(link, f) {
    if (link.dead || typeof f.epoch !== "string" || !isSeq(f.seq)) return;
    link.epoch = f.epoch;
    const pending = [];
    for (const fn of [...this._resyncHandlers]) {
      const r = this._call(fn, f);
      if (isThenable(r)) pending.push(r);
    }
    const done = () => {
      this._setPos({ epoch: f.epoch, seq: f.seq });
      this._ackDirty = true;
      this._scheduleAck();
    };
    if (pending.length === 0) {
      done();
      return;
    }
    // The app reloads asynchronously: hold later frames until it is done.
    this._paused = true;
    Promise.allSettled(pending).then((results) => {
      this._paused = false;
      const failed = results.find((r) => r.status === "rejected");
      if (failed) {
        // Keep the old position: the next connection gets resync_required again.
        this._inbox.length = 0;
        this._emitError({ type: "error", code: "resync_failed", message: String(failed.reason?.message ?? failed.reason) });
        if (!this._stopped && this._link === link && !link.dead) this._linkClosed(link, undefined, "resync_failed", true);
        return;
      }
      done();
      this._drain();
    });
  }

  _errorFrame(link, f) {
    if (link.dead) return;
    this._emitError(f);
    if (link.kind !== "sse") return; // WebSocket: a close code follows if fatal
    const entry = CLOSE_BY_NAME[f.code];
    if (!entry || entry.code === 1000) return;
    if (AMBIGUOUS_SSE_CODES.has(f.code)) {
      link.pendingClose = entry; // fatal only if the stream ends next
      return;
    }
    this._linkClosed(link, entry.code, entry.name, true);
  }

  // -- sending -----------------------------------------------------------------------------

  _wsSend(link, obj) {
    const ws = link.socket;
    if (!ws || link.dead || ws.readyState !== WS_OPEN) return false;
    try {
      ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  async _post(link, action, body, keepalive = false) {
    if (!link.connId) return false;
    const url = `${link.endpoint.http}/sse/${encodeURIComponent(link.connId)}/${action}`;
    let res;
    try {
      res = await this._fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${this._token}` },
        body: JSON.stringify(body),
        keepalive,
      });
    } catch (e) {
      this._emitError({ type: "error", code: "network_error", message: String(e?.message ?? e) });
      return false;
    }
    if (res && res.ok === false) {
      let payload = null;
      try {
        payload = await res.json();
      } catch {
        // not JSON
      }
      this._emitError({
        type: "error",
        code: typeof payload?.code === "string" ? payload.code : `http_${res.status}`,
        message: typeof payload?.message === "string" ? payload.message : `HTTP ${res.status} on ${action}`,
      });
      return false;
    }
    return true;
  }

  /** Send a client frame on the current link (WS frame or SSE POST). */
  _deliver(link, frame) {
    if (link.kind === "websocket") return Promise.resolve(this._wsSend(link, frame));
    const { type, ...body } = frame;
    return this._post(link, type, body);
  }

  _control(frame, queueIfOffline) {
    const link = this._link;
    if (link && link.welcomed && !link.dead) return this._deliver(link, frame);
    if (queueIfOffline) {
      return new Promise((resolve) => this._queued.push({ frame, resolve }));
    }
    return Promise.resolve(false);
  }

  _scheduleAck() {
    if (this._ackTimer != null || this._stopped) return;
    this._ackTimer = this._setTimeout(() => {
      this._ackTimer = null;
      this._flushAck(false);
    }, this._ackIntervalMs);
  }

  _clearAckTimer() {
    if (this._ackTimer != null) this._clearTimeout(this._ackTimer);
    this._ackTimer = null;
  }

  _flushAck(final) {
    const link = this._link;
    const p = this._pos;
    if (!this._ackDirty || !p || !link || link.dead || !link.welcomed || link.epoch !== p.epoch) return;
    const seq = p.seq;
    if (link.kind === "websocket") {
      if (this._wsSend(link, { type: "ack", seq })) this._ackDirty = false;
      return;
    }
    this._ackDirty = false;
    this._post(link, "ack", { seq }, final).then((ok) => {
      if (!ok) this._ackDirty = true; // retried after the next event or welcome
    });
  }

  // -- state, storage, handlers ------------------------------------------------------------

  _setPos(pos) {
    this._pos = pos;
    this._save();
  }

  _load() {
    try {
      const raw = this._storage.getItem(this._storageKey);
      if (!raw) return null;
      const v = JSON.parse(raw);
      if (!v || typeof v !== "object") return null;
      return {
        device: typeof v.device === "string" && DEVICE_RE.test(v.device) ? v.device : null,
        pos: typeof v.epoch === "string" && isSeq(v.seq) ? { epoch: v.epoch, seq: v.seq } : null,
      };
    } catch {
      return null;
    }
  }

  _save() {
    if (!this._persist || !this._storage) return;
    const v = { device: this._device };
    if (this._pos) {
      v.epoch = this._pos.epoch;
      v.seq = this._pos.seq;
    }
    try {
      this._storage.setItem(this._storageKey, JSON.stringify(v));
    } catch {
      // quota or privacy mode: run without persistence
    }
  }

  _setState(state, info) {
    this._state = state;
    for (const fn of [...this._stateHandlers]) this._call(fn, state, { ...info });
  }

  _emit(set, arg) {
    if (!set) return;
    for (const fn of [...set]) this._call(fn, arg);
  }

  _emitError(frame) {
    for (const fn of [...this._errorHandlers]) {
      try {
        fn(frame);
      } catch {
        // an error handler's own failure has nowhere left to go
      }
    }
  }

  _call(fn, a, b) {
    try {
      return fn(a, b);
    } catch (e) {
      this._emitError({ type: "error", code: "handler_error", message: String(e?.message ?? e), error: e });
      return undefined;
    }
  }
}

export default TaskSyncClient;
