// WebSocket link: /ws with the JSON subprotocol; client frames are WebSocket messages. The
// server's heartbeat drives a watchdog: nothing at all for 2.5 heartbeats means a dead link.

import { SUBPROTOCOL_JSON } from "./codes.js";
import { Link } from "./link.js";

const WS_OPEN = 1;
const HEARTBEAT_FACTOR = 2.5;

export class WsLink extends Link {
  constructor(endpoint, options) {
    super("websocket", endpoint, options);
    this.heartbeatMs = 0;
    this.watchdog = null;
  }

  /** Open the socket (query: token, device, since) and arm the welcome deadline. */
  start(query, connectTimeoutMs) {
    let ws;
    try {
      ws = new this.env.WebSocket(`${this.endpoint.ws}/ws?${query}`, [SUBPROTOCOL_JSON]);
    } catch (e) {
      this.failSoon(e);
      return this;
    }
    this.socket = ws;
    ws.onopen = () => {
      if (!this.dead) this.opened = true;
    };
    ws.onmessage = (ev) => {
      if (!this.dead) this.hooks.frame(this, ev.data);
    };
    ws.onerror = () => {}; // a close event always follows
    ws.onclose = (ev) => {
      if (!this.dead) this.hooks.closed(this, ev?.code, ev?.reason ?? "", false);
    };
    this.armConnectTimer(connectTimeoutMs);
    return this;
  }

  /** The welcome's heartbeat (seconds) starts the watchdog. */
  setHeartbeat(seconds) {
    if (typeof seconds === "number" && seconds > 0) {
      this.heartbeatMs = seconds * 1000;
      this.kick();
    }
  }

  kick() {
    if (!(this.heartbeatMs > 0) || this.dead) return;
    if (this.watchdog != null) this.env.clearTimeout(this.watchdog);
    this.watchdog = this.env.setTimeout(() => {
      this.watchdog = null;
      if (!this.dead) this.hooks.closed(this, 4012, "heartbeat_timeout", true);
    }, this.heartbeatMs * HEARTBEAT_FACTOR);
  }

  send(obj) {
    const ws = this.socket;
    if (!ws || this.dead || ws.readyState !== WS_OPEN) return false;
    try {
      ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /** Send a client frame; resolves whether it was handed to the socket. */
  deliver(frame) {
    return Promise.resolve(this.send(frame));
  }

  closeSocket(ws, code, reason) {
    ws.close(code, reason);
  }

  clearTimers() {
    super.clearTimers();
    if (this.watchdog != null) this.env.clearTimeout(this.watchdog);
    this.watchdog = null;
  }
}
