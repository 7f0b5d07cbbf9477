// What every link (one WebSocket or one EventSource) has in common: its state flags and the
// welcome deadline. A link reports to `hooks` (the session):
//   hooks.frame(link, data)                   a message arrived
//   hooks.closed(link, code, reason, local)   it ended (code undefined: no close code)
//   hooks.sseError(link)                      EventSource onerror (SSE only)
//   hooks.error(frame)                        a client-side error for onError
//   hooks.token()                             the token in use (SSE POSTs)

export class Link {
  constructor(kind, endpoint, { env, hooks, probe = false }) {
    this.kind = kind;
    this.endpoint = endpoint;
    this.env = env;
    this.hooks = hooks;
    this.probe = probe; // a WebSocket tried while SSE is still in use
    this.socket = null;
    this.opened = false;
    this.welcomed = false;
    this.dead = false; // killed: no callback of it counts any more
    this.connId = null;
    this.epoch = null; // of the user stream, from welcome / resync_required
    this.bepoch = null; // of the broadcast stream, likewise
    this.pendingClose = null; // SSE: a catalogue entry that is fatal if the stream ends next
    this.connectTimer = null;
  }

  /** Construction failed (bad URL, blocked): behave like a failed connection attempt. */
  failSoon(e) {
    this.env.setTimeout(() => this.hooks.closed(this, undefined, String(e?.message ?? e), true), 0);
  }

  /** No welcome within `ms`: the link ends with 4013 handshake_timeout (decided locally). */
  armConnectTimer(ms) {
    if (!(ms > 0)) return;
    this.connectTimer = this.env.setTimeout(() => {
      this.connectTimer = null;
      if (!this.dead && !this.welcomed) this.hooks.closed(this, 4013, "handshake_timeout", true);
    }, ms);
  }

  clearConnectTimer() {
    if (this.connectTimer != null) this.env.clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }

  /** A frame arrived (any frame proves the link alive). Overridden by the WebSocket. */
  kick() {}

  /** Stop listening to the link and close its socket. */
  kill(code = 1000, reason = "") {
    this.dead = true;
    this.clearTimers();
    const s = this.socket;
    if (!s) return;
    try {
      this.closeSocket(s, code, reason);
    } catch {
      // already closed
    }
  }

  clearTimers() {
    this.clearConnectTimer();
  }
}
