// The public class. It checks the options, wires the parts together and forwards the public
// calls; the work is done by Session (session.js) and its links (transport_*.js).

import { Backoff } from "./backoff.js";
import { Handlers } from "./emitter.js";
import { Subscriptions } from "./filters.js";
import { PositionTracker } from "./position.js";
import { Session } from "./session.js";
import { Token } from "./token.js";
import { Endpoints } from "./urls.js";

const TRANSPORTS = ["websocket", "sse"];

/** Platform objects: injected (tests) or the globals, called unbound (browsers reject a foreign `this`). */
function platform(o) {
  const fetchFn = o.fetch ?? globalThis.fetch;
  const setT = o.setTimeout ?? globalThis.setTimeout;
  const clearT = o.clearTimeout ?? globalThis.clearTimeout;
  return {
    WebSocket: "WebSocket" in o ? o.WebSocket : globalThis.WebSocket,
    EventSource: "EventSource" in o ? o.EventSource : globalThis.EventSource,
    fetch: (...a) => fetchFn(...a),
    setTimeout: (fn, ms) => setT(fn, ms),
    clearTimeout: (id) => clearT(id),
    random: o.random ?? Math.random,
    now: o.now ?? Date.now,
  };
}

export class TaskSyncClient {
  constructor(options = {}) {
    const o = options;
    // One gateway URL or a list of equivalent ones (replicas); see decide() for when it moves on.
    const endpoints = new Endpoints(o.url);
    const token = new Token(o);
    const encoding = o.encoding ?? "json";
    if (encoding !== "json") throw new TypeError(`encoding ${JSON.stringify(encoding)} is not supported (json only)`);
    const env = platform(o);
    const wanted = o.transports ?? TRANSPORTS;
    if (!Array.isArray(wanted) || wanted.length === 0 || wanted.some((t) => !TRANSPORTS.includes(t))) {
      throw new TypeError('transports must be a non-empty array of "websocket" and/or "sse"');
    }
    const transports = [...new Set(wanted)].filter((t) => !!(t === "websocket" ? env.WebSocket : env.EventSource));
    if (transports.length === 0) throw new Error("no usable transport: inject WebSocket and/or EventSource");
    const subs = new Subscriptions(o.filters);
    // Positions (user and broadcast stream) and device, optionally kept in (session) storage
    // across page reloads, under the first URL whichever gateway is in use.
    const tracker = new PositionTracker({
      persist: o.persist, storage: o.storage, key: `tasksync:${endpoints.first.base}`, device: o.device, random: env.random,
    });
    this._session = new Session(
      { env, endpoints, token, tracker, subs, backoff: new Backoff(o.backoff, env.random), handlers: new Handlers() },
      {
        transports,
        wsFailuresBeforeFallback: o.wsFailuresBeforeFallback ?? 2,
        retryWebSocketAfterMs: o.retryWebSocketAfterMs ?? 60000,
        ackIntervalMs: o.ackIntervalMs ?? 500,
        connectTimeoutMs: o.connectTimeoutMs ?? 15000,
      },
    );
  }

  /** {epoch, seq} of the last user event handed to the handlers (or of the last welcome/resync). */
  get position() {
    const p = this._session.tracker.user;
    return p ? { epoch: p.epoch, seq: p.seq } : null;
  }

  /**
   * {epoch, seq} in the shared broadcast stream (bepoch, bseq): the last broadcast handed to the
   * handlers, or of the last welcome / broadcast resync. null until a server has said one.
   */
  get broadcastPosition() {
    const p = this._session.tracker.broadcast;
    return p ? { epoch: p.epoch, seq: p.seq } : null;
  }

  /** The `since` that resumes exactly here, both streams: `epoch:seq[,bepoch:bseq]`, or null. */
  get resumePoint() {
    return this._session.tracker.resumePoint();
  }

  get transport() {
    const s = this._session;
    return s.link ? s.link.kind : s.next;
  }

  get state() {
    return this._session.state;
  }

  get device() {
    return this._session.tracker.device;
  }

  /** Base URL of the gateway in use (or tried next). */
  get url() {
    const s = this._session;
    return (s.link?.endpoint ?? s.endpoints.current).base;
  }

  /** Handle events of one type ("task_created", ...) or all of them ("*"). Returns unsubscribe. */
  on(type, fn) {
    return this._session.handlers.on(type, fn);
  }

  onResync(fn) {
    const h = this._session.handlers;
    return h.add(h.resync, fn);
  }

  onState(fn) {
    const h = this._session.handlers;
    return h.add(h.state, fn);
  }

  onError(fn) {
    const h = this._session.handlers;
    return h.add(h.error, fn);
  }

  /**
   * Set filters. scope "connection" (default): kept by the client and re-sent after every
   * (re)connect. scope "user": stored by the server for the user; sent once (queued until
   * connected). Resolves true when handed to the server, false when only queued/stored.
   */
  subscribe(filters, { scope = "connection" } = {}) {
    const s = this._session;
    return s.subs.send(s.link, s.subs.subscribeFrame(filters, scope), scope === "user");
  }

  unsubscribe({ scope = "connection" } = {}) {
    const s = this._session;
    return s.subs.send(s.link, s.subs.unsubscribeFrame(scope), scope === "user");
  }

  connect() {
    this._session.start();
    return this;
  }

  /** Flush the pending ack, close with 1000, never reconnect (until connect() again). */
  close() {
    this._session.stop();
  }
}

export default TaskSyncClient;
