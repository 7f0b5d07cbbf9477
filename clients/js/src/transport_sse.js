// Server-Sent Events link: GET /sse for the stream; client frames are small authenticated POSTs
// to /sse/{conn_id}/{action}. Heartbeats are SSE comments the page cannot see, so a dead stream
// is noticed through the browser's onerror only.

import { Link } from "./link.js";

const EVENTSOURCE_CLOSED = 2;

export class SseLink extends Link {
  constructor(endpoint, options) {
    super("sse", endpoint, options);
  }

  start(query, connectTimeoutMs) {
    let es;
    try {
      es = new this.env.EventSource(`${this.endpoint.http}/sse?${query}`);
    } catch (e) {
      this.failSoon(e);
      return this;
    }
    this.socket = es;
    es.onopen = () => {
      if (!this.dead) this.opened = true;
    };
    es.onmessage = (ev) => {
      if (!this.dead) this.hooks.frame(this, ev.data);
    };
    es.onerror = () => {
      if (!this.dead) this.hooks.sseError(this);
    };
    this.armConnectTimer(connectTimeoutMs);
    return this;
  }

  /** The browser gave up on the stream (it won't reconnect by itself). */
  get browserGaveUp() {
    return !this.socket || this.socket.readyState === EVENTSOURCE_CLOSED;
  }

  /** The browser reconnects the stream by itself: a new welcome (and conn_id) is due. */
  awaitBrowserReconnect() {
    this.welcomed = false;
    this.opened = false;
    this.connId = null;
  }

  async post(action, body, keepalive = false) {
    if (!this.connId) return false;
    const url = `${this.endpoint.http}/sse/${encodeURIComponent(this.connId)}/${action}`;
    let res;
    try {
      res = await this.env.fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.hooks.token()}` },
        body: JSON.stringify(body),
        keepalive,
      });
    } catch (e) {
      this.hooks.error({ type: "error", code: "network_error", message: String(e?.message ?? e) });
      return false;
    }
    if (res && res.ok === false) {
      let payload = null;
      try {
        payload = await res.json();
      } catch {
        // not JSON
      }
      this.hooks.error({
        type: "error",
        code: typeof payload?.code === "string" ? payload.code : `http_${res.status}`,
        message: typeof payload?.message === "string" ? payload.message : `HTTP ${res.status} on ${action}`,
      });
      return false;
    }
    return true;
  }

  /** Send a client frame as POST /sse/{conn_id}/{type}; resolves whether the server took it. */
  deliver(frame) {
    const { type, ...body } = frame;
    return this.post(type, body);
  }

  /** final: the page may be going away, so the POST is sent with keepalive. */
  ack(seq, final = false) {
    return this.post("ack", { seq }, final);
  }

  closeSocket(es) {
    es.close();
  }
}
