// Frames from the server: parsed, queued (an async resync handler holds later frames), then
// handled in order. Two streams arrive on one link: user events (`seq`) and broadcast events
// (`bseq` instead of `seq`, shared by every user). An event goes to the app once (above its
// stream's position), then that position moves; only user events schedule an ack (acks are
// user-seq only), coalesced to one per interval.

import { AMBIGUOUS_SSE_NAMES, closeForName } from "./codes.js";
import { STREAMS, isSeq } from "./position.js";

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
    const p = this.session.tracker.user; // acks are user-seq only, never bseq
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
      case "batch":
        // Several event frames in one message (we connect with batch=1): each in order.
        link.pendingClose = null;
        for (const inner of Array.isArray(frame.frames) ? frame.frames : []) {
          if (inner !== null && typeof inner === "object" && typeof inner.type === "string" && inner.type !== "batch") {
            this.inbox.push([link, inner]);
          }
        }
        this.drain();
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
    else if (isSeq(frame.bseq) && "data" in frame) this.broadcastEvent(link, frame);
  }

  welcome(link, f) {
    const s = this.session;
    if (link.dead || typeof f.epoch !== "string" || !isSeq(f.seq)) return;
    link.welcomed = true;
    link.connId = typeof f.conn_id === "string" ? f.conn_id : null;
    link.epoch = f.epoch;
    const hasBroadcast = typeof f.bepoch === "string" && isSeq(f.bseq);
    if (hasBroadcast) link.bepoch = f.bepoch;
    link.clearConnectTimer();
    s.adoptProbe(link);
    if (link !== s.link) return;
    if (link.kind === "websocket") link.setHeartbeat(f.heartbeat);
    // Same epoch: never move backwards (a WebSocket welcomed while SSE was still delivering).
    s.tracker.welcome("user", f.epoch, f.seq);
    if (hasBroadcast) s.tracker.welcome("broadcast", f.bepoch, f.bseq);
    s.opened(link);
    s.subs.replay(link);
    if (s.acks.dirty) s.acks.schedule();
  }

  event(link, f) {
    const s = this.session;
    if (!this.fresh(link, "user", link.epoch, f.seq)) return;
    this.deliver({ type: f.type, seq: f.seq, id: f.id, data: f.data });
    s.tracker.processed("user", link.epoch, f.seq);
    s.acks.mark();
  }

  /** A broadcast event: handled like an event (same handlers), deduped by bseq, never acked. */
  broadcastEvent(link, f) {
    if (!this.fresh(link, "broadcast", link.bepoch, f.bseq)) return;
    this.deliver({ type: f.type, bseq: f.bseq, id: f.id, data: f.data });
    this.session.tracker.processed("broadcast", link.bepoch, f.bseq);
  }

  /** Not yet processed: above the stream's position, and not from a stale link of another epoch. */
  fresh(link, stream, epoch, seq) {
    const s = this.session;
    const p = s.tracker.get(stream);
    if (p && epoch !== null && epoch !== p.epoch && link !== s.link) return false;
    return !s.tracker.isDuplicate(stream, epoch, seq);
  }

  deliver(event) {
    const h = this.session.handlers;
    h.emit(event.type, event);
    h.emit("*", event);
  }

  resync(link, f) {
    const s = this.session;
    if (link.dead || typeof f.epoch !== "string" || !isSeq(f.seq)) return;
    // With stream "broadcast" the frame is about the broadcast stream: only its position moves
    // (nothing to ack). Without `stream` it is the user stream; a stream we don't know is
    // ignored rather than taken for the user stream.
    const stream = f.stream ?? "user";
    if (!STREAMS.includes(stream)) return;
    const broadcast = stream === "broadcast";
    if (broadcast) link.bepoch = f.epoch;
    else link.epoch = f.epoch;
    const pending = s.handlers.emitResync(f);
    const done = () => {
      s.tracker.resync(stream, f.epoch, f.seq);
      if (!broadcast) s.acks.mark();
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
