// Frames from the server: parsed, queued (an async resync handler holds later frames), then
// handled in order. Events go to the app once (seq above the position), then the position moves
// and an ack is scheduled; acks are coalesced to one per interval.

import { AMBIGUOUS_SSE_NAMES, closeForName } from "./codes.js";
import { isSeq } from "./position.js";

export class Acker {
  constructor(session, intervalMs) {
    this.session = session;
    this.intervalMs = intervalMs;
    this.dirty = false; // the position moved since the last ack the server took
    this.timer = null;
  }

  mark() {
    this.dirty = true;
    this.schedule();
  }

  schedule() {
    const s = this.session;
    if (this.timer != null || s.stopped) return;
    this.timer = s.env.setTimeout(() => {
      this.timer = null;
      this.flush(false);
    }, this.intervalMs);
  }

  clear() {
    if (this.timer != null) this.session.env.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Ack the position on the current link (final: the client is closing). */
  flush(final) {
    const link = this.session.link;
    const p = this.session.position.value;
    if (!this.dirty || !p || !link || link.dead || !link.welcomed || link.epoch !== p.epoch) return;
    if (link.kind === "websocket") {
      if (link.send({ type: "ack", seq: p.seq })) this.dirty = false;
      return;
    }
    this.dirty = false;
    link.ack(p.seq, final).then((ok) => {
      if (!ok) this.dirty = true; // retried after the next event or welcome
    });
  }
}

export class Dispatcher {
  constructor(session) {
    this.session = session;
    this.inbox = []; // [link, frame]
    this.paused = false; // an async resync handler is reloading
    this.draining = false;
  }

  /** A message arrived on a live link. */
  receive(link, data) {
    if (typeof data !== "string") return; // JSON encoding only
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") return;
    link.kick();
    switch (frame.type) {
      case "ping":
        if (link.kind === "websocket") {
          const ts = typeof frame.ts === "number" ? frame.ts : this.session.env.now() / 1000;
          link.send({ type: "pong", ts });
        }
        return;
      case "pong":
        return;
      case "error":
        this.errorFrame(link, frame);
        return;
      default:
        link.pendingClose = null; // the stream went on: a preceding error frame was not fatal
        this.inbox.push([link, frame]);
        this.drain();
    }
  }

  clear() {
    this.inbox.length = 0;
  }

  drain() {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.inbox.length && !this.paused) {
        const [link, frame] = this.inbox.shift();
        this.process(link, frame);
      }
    } finally {
      this.draining = false;
    }
  }

  process(link, frame) {
    const t = frame.type;
    if (t === "welcome") this.welcome(link, frame);
    else if (t === "resync_required") this.resync(link, frame);
    else if (t === "subscribed") {
      if (!link.dead) this.session.handlers.emit("subscribed", frame);
    } else if (isSeq(frame.seq) && "data" in frame) this.event(link, frame);
  }

  welcome(link, f) {
    const s = this.session;
    if (link.dead || typeof f.epoch !== "string" || !isSeq(f.seq)) return;
    link.welcomed = true;
    link.connId = typeof f.conn_id === "string" ? f.conn_id : null;
    link.epoch = f.epoch;
    link.clearConnectTimer();
    s.adoptProbe(link);
    if (link !== s.link) return;
    if (link.kind === "websocket") link.setHeartbeat(f.heartbeat);
    const p = s.position.value;
    // Same epoch: never move backwards (a WebSocket welcomed while SSE was still delivering).
    if (!p || p.epoch !== f.epoch || f.seq > p.seq) s.position.set({ epoch: f.epoch, seq: f.seq });
    s.opened(link);
    s.subs.replay(link);
    if (s.acks.dirty) s.acks.schedule();
  }

  event(link, f) {
    const s = this.session;
    const p = s.position.value;
    if (p && link.epoch !== null && link.epoch !== p.epoch && link !== s.link) return;
    if (s.position.isDuplicate(link.epoch, f.seq)) return;
    const event = { type: f.type, seq: f.seq, id: f.id, data: f.data };
    s.handlers.emit(f.type, event);
    s.handlers.emit("*", event);
    s.position.set({ epoch: link.epoch ?? p?.epoch ?? null, seq: f.seq });
    s.acks.mark();
  }

  resync(link, f) {
    const s = this.session;
    if (link.dead || typeof f.epoch !== "string" || !isSeq(f.seq)) return;
    link.epoch = f.epoch;
    const pending = s.handlers.emitResync(f);
    const done = () => {
      s.position.set({ epoch: f.epoch, seq: f.seq });
      s.acks.mark();
    };
    if (pending.length === 0) {
      done();
      return;
    }
    // The app reloads asynchronously: hold later frames until it is done.
    this.paused = true;
    Promise.allSettled(pending).then((results) => {
      this.paused = false;
      const failed = results.find((r) => r.status === "rejected");
      if (failed) {
        // Keep the old position: the next connection gets resync_required again.
        this.inbox.length = 0;
        s.handlers.emitError({ type: "error", code: "resync_failed", message: String(failed.reason?.message ?? failed.reason) });
        if (!s.stopped && s.link === link && !link.dead) s.linkClosed(link, undefined, "resync_failed", true);
        return;
      }
      done();
      this.drain();
    });
  }

  errorFrame(link, f) {
    if (link.dead) return;
    this.session.handlers.emitError(f);
    if (link.kind !== "sse") return; // WebSocket: a close code follows if fatal
    const entry = closeForName(f.code);
    if (!entry) return;
    if (AMBIGUOUS_SSE_NAMES.has(f.code)) {
      link.pendingClose = entry; // fatal only if the stream ends next
      return;
    }
    this.session.linkClosed(link, entry.code, entry.name, true);
  }
}
