// The connection lifecycle: open a link (WebSocket or SSE), and when it ends, follow decide()
// of codes.js: stop, or reconnect (after backoff, or at once) on the same or the next gateway,
// refreshing the token first when asked. After repeated WebSocket failures it falls back to
// SSE and later probes a WebSocket again, switching over once that one says welcome.

import { decide, isWsConnectFailure, CLOSE_CODES } from "./codes.js";
import { Acker, Dispatcher } from "./dispatch.js";
import { SseLink } from "./transport_sse.js";
import { WsLink } from "./transport_ws.js";
import { connectQuery } from "./urls.js";

export class Session {
  /**
   * parts: env (platform objects), endpoints, token, tracker (positions), backoff, handlers, subs;
   * config: transports, wsFailuresBeforeFallback, retryWebSocketAfterMs, ackIntervalMs,
   * connectTimeoutMs.
   */
  constructor(parts, config) {
    Object.assign(this, parts);
    this.transports = config.transports;
    this.primary = this.transports[0];
    this.next = this.primary; // transport of the next attempt
    this.wsFallback = this.primary === "websocket" && this.transports.includes("sse");
    this.wsFailuresBeforeFallback = config.wsFailuresBeforeFallback;
    this.retryWebSocketAfterMs = config.retryWebSocketAfterMs;
    this.connectTimeoutMs = config.connectTimeoutMs;
    this.acks = new Acker(this, config.ackIntervalMs);
    this.dispatch = new Dispatcher(this);

    this.state = "closed";
    this.stopped = true;
    this.link = null; // the link in use
    this.probe = null; // a WebSocket tried while on SSE
    this.opening = null; // marker of the pending open (token fetch in flight)
    this.probeOpening = null;
    this.reconnectTimer = null;
    this.wsRetryTimer = null;
    this.wsFailures = 0;
    this.linkHooks = {
      frame: (link, data) => this.dispatch.receive(link, data),
      closed: (link, code, reason, local) => this.linkClosed(link, code, reason, local),
      sseError: (link) => this.sseError(link),
      error: (frame) => this.handlers.emitError(frame),
      token: () => this.token.value,
    };
  }

  setState(state, info) {
    this.state = state;
    this.handlers.emitState(state, info);
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.backoff.reset();
    this.wsFailures = 0;
    this.next = this.primary;
    this.setState("connecting", { transport: this.next, attempt: 0 });
    this.open();
  }

  stop() {
    if (this.stopped) return;
    this.acks.clear();
    this.acks.flush(true);
    this.stopped = true;
    const transport = this.link ? this.link.kind : this.next;
    this.teardown(1000, "client closed");
    this.setState("closed", { transport, attempt: this.backoff.attempt, code: 1000, reason: "client_closed" });
  }

  async open() {
    const marker = {};
    this.opening = marker;
    let token;
    try {
      token = await this.token.take();
    } catch (e) {
      if (this.stopped || this.opening !== marker) return;
      this.opening = null;
      this.handlers.emitError({ type: "error", code: "token_error", message: String(e?.message ?? e) });
      this.scheduleReconnect({ reason: "token_error" });
      return;
    }
    if (this.stopped || this.opening !== marker) return;
    this.opening = null;
    this.link = this.startLink(this.next, token, false);
  }

  startLink(kind, token, probe) {
    const Kind = kind === "websocket" ? WsLink : SseLink;
    const link = new Kind(this.endpoints.current, { env: this.env, hooks: this.linkHooks, probe });
    // since = the resume point: epoch:seq, with ,bepoch:bseq once there is a broadcast position.
    const query = connectQuery(token, this.tracker.device, this.tracker.resumePoint());
    return link.start(query, this.connectTimeoutMs);
  }

  /** A welcome on a probe: the WebSocket is back, switch over and drop SSE. */
  adoptProbe(link) {
    if (!link.probe) return;
    const old = this.link;
    this.link = link;
    this.probe = null;
    link.probe = false;
    if (old) old.kill(); // events the two overlap on are dropped by the seq/bseq checks
  }

  /** The current link said welcome (after the position moved). */
  opened(link) {
    this.backoff.reset();
    this.next = link.kind;
    if (link.kind === "websocket") {
      this.wsFailures = 0;
      if (this.wsRetryTimer != null) this.env.clearTimeout(this.wsRetryTimer);
      this.wsRetryTimer = null;
    } else if (this.wsFallback) {
      this.scheduleWsRetry();
    }
    this.setState("open", { transport: link.kind, attempt: 0 });
  }

  linkClosed(link, code, reason, local) {
    if (link.dead) return;
    link.kill(1000, local ? String(reason).slice(0, 100) : "");
    if (link === this.probe) {
      this.probe = null;
      this.scheduleWsRetry();
      return;
    }
    if (link !== this.link) return;
    this.link = null;
    this.afterClose(link, code, reason, local);
  }

  sseError(link) {
    if (link === this.probe || link !== this.link) return;
    if (link.pendingClose) {
      const c = link.pendingClose;
      this.linkClosed(link, c.code, c.name, true);
    } else if (link.welcomed && !link.browserGaveUp) {
      // The stream ended after a healthy run; the browser reconnects by itself with
      // Last-Event-ID. Let it try once; a second error before a welcome goes to our backoff.
      link.awaitBrowserReconnect();
      this.backoff.count();
      this.setState("reconnecting", { transport: "sse", attempt: this.backoff.attempt, reason: "sse_error", delayMs: 0 });
      link.armConnectTimer(this.connectTimeoutMs);
    } else {
      this.linkClosed(link, undefined, "sse_error", true);
    }
  }

  afterClose(link, code, reason, local) {
    if (this.stopped) return;
    const entry = code != null ? CLOSE_CODES[code] : undefined;
    const why = reason || entry?.name || "";
    this.killProbe();
    const d = decide(code, { welcomed: link.welcomed, local });
    if (!d.reconnect || (d.refreshToken && !this.token.canRefresh)) {
      // A fixed token string cannot be refreshed: reconnecting would only get 4002 again.
      this.stopped = true;
      this.teardown();
      const stopWhy = d.reconnect ? "token_expired_no_get_token" : why;
      this.setState("closed", { transport: link.kind, attempt: this.backoff.attempt, code, reason: stopWhy });
      return;
    }
    if (link.kind === "websocket") {
      if (isWsConnectFailure(code, { welcomed: link.welcomed, opened: link.opened, local })) {
        this.wsFailures += 1;
        if (this.wsFallback && this.wsFailures >= this.wsFailuresBeforeFallback) {
          this.wsFailures = 0;
          this.next = "sse";
          this.scheduleWsRetry();
        }
      } else {
        this.wsFailures = 0;
      }
    }
    if (d.refreshToken) this.token.refresh(); // before the delay, not after it
    if (d.rotate) this.endpoints.rotate();
    this.scheduleReconnect({ code, reason: why, immediate: d.immediate });
  }

  scheduleReconnect({ code, reason = "", immediate = false }) {
    const delayMs = this.backoff.next(immediate);
    const state = { transport: this.next, attempt: this.backoff.attempt, reason, delayMs };
    if (code !== undefined) state.code = code;
    this.setState("reconnecting", state);
    if (this.reconnectTimer != null) this.env.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = this.env.setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopped) this.open();
    }, delayMs);
  }

  // -- SSE -> WebSocket return -------------------------------------------------------------

  scheduleWsRetry() {
    if (this.stopped || !this.wsFallback || this.wsRetryTimer != null) return;
    this.wsRetryTimer = this.env.setTimeout(() => {
      this.wsRetryTimer = null;
      this.retryWs();
    }, this.retryWebSocketAfterMs);
  }

  retryWs() {
    if (this.stopped || this.probe || this.probeOpening) return;
    const link = this.link;
    if (link && link.kind === "sse" && link.welcomed) {
      this.openProbe(); // keep SSE until the WebSocket says welcome
    } else if (!link || link.kind === "sse") {
      this.next = "websocket"; // SSE isn't up either: next attempt goes back to WebSocket
    }
  }

  async openProbe() {
    const marker = {};
    this.probeOpening = marker;
    let token;
    try {
      token = await this.token.take();
    } catch {
      if (this.probeOpening === marker) this.probeOpening = null;
      this.scheduleWsRetry();
      return;
    }
    if (this.probeOpening !== marker) return;
    this.probeOpening = null;
    if (this.stopped || !this.link || this.link.kind !== "sse") return;
    this.probe = this.startLink("websocket", token, true);
  }

  killProbe() {
    this.probeOpening = null;
    if (this.probe) this.probe.kill();
    this.probe = null;
  }

  teardown(code = 1000, reason = "") {
    this.opening = null;
    this.killProbe();
    if (this.link) this.link.kill(code, reason);
    this.link = null;
    for (const k of ["reconnectTimer", "wsRetryTimer"]) {
      if (this[k] != null) this.env.clearTimeout(this[k]);
      this[k] = null;
    }
    this.acks.clear();
    this.dispatch.clear();
    this.subs.dropQueued();
  }
}
