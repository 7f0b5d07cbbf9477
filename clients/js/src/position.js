// Where the client is in its two streams, and the device id: the user stream (`epoch:seq` of
// the last user event handed to the app) and the shared broadcast stream (`bepoch:bseq`),
// optionally kept in (session) storage so a page reload resumes where it left off. The resume
// point sent as `since` is `epoch:seq`, or `epoch:seq,bepoch:bseq` once there is a broadcast
// position (vocab/position.py ResumePoint).

export const DEVICE_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
export const EPOCH_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** The two streams: "user" (seq, acked) and "broadcast" (bseq, never acked). */
export const STREAMS = Object.freeze(["user", "broadcast"]);

export function isSeq(v) {
  return Number.isSafeInteger(v) && v >= 0;
}

export function randomId(random, n = 16) {
  const abc = "abcdefghijklmnopqrstuvwxyz0123456789";
  let s = "";
  for (let i = 0; i < n; i++) s += abc[Math.floor(random() * abc.length) % abc.length];
  return s;
}

/** `epoch:seq` (vocab/position.py Position). */
export function formatPosition(p) {
  return `${p.epoch}:${p.seq}`;
}

/** The `since` text: `epoch:seq` or `epoch:seq,bepoch:bseq`; null without a user position. */
export function formatResumePoint(user, broadcast) {
  if (!user) return null;
  return broadcast ? `${formatPosition(user)},${formatPosition(broadcast)}` : formatPosition(user);
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null; // the getter itself throws in sandboxed frames
  } catch {
    return null;
  }
}

function stored(epoch, seq) {
  return typeof epoch === "string" && EPOCH_RE.test(epoch) && isSeq(seq) ? { epoch, seq } : null;
}

function checkStream(stream) {
  if (!STREAMS.includes(stream)) throw new TypeError(`unknown stream ${JSON.stringify(stream)}`);
}

export class PositionTracker {
  /**
   * persist: read/write `storage` (default sessionStorage) under `key`; device: an explicit id
   * (wins over a stored one); random: for a fresh device id.
   */
  constructor({ persist = false, storage, key, device, random }) {
    this.persist = !!persist;
    this.storage = storage ?? (this.persist ? defaultStorage() : null);
    this.key = key;
    this.positions = { user: null, broadcast: null }; // {epoch, seq} or null each
    let storedDevice = null;
    if (this.persist && this.storage) {
      const saved = this.load();
      if (saved) {
        storedDevice = saved.device;
        this.positions = { user: saved.user, broadcast: saved.broadcast };
      }
    }
    const d = device ?? storedDevice ?? randomId(random);
    if (typeof d !== "string" || !DEVICE_RE.test(d)) {
      throw new TypeError("device must be 1-64 chars of [A-Za-z0-9_.:-]");
    }
    this.device = d;
    this.save();
  }

  /** {epoch, seq} in the user stream, or null. */
  get user() {
    return this.positions.user;
  }

  /** {epoch, seq} (bepoch, bseq) in the broadcast stream, or null. */
  get broadcast() {
    return this.positions.broadcast;
  }

  get(stream) {
    checkStream(stream);
    return this.positions[stream];
  }

  /** Set a stream's position as given (even backwards: a resync). */
  set(stream, pos) {
    checkStream(stream);
    this.positions[stream] = pos ? { epoch: pos.epoch, seq: pos.seq } : null;
    this.save();
  }

  /**
   * The stream continues from epoch:seq (a welcome). In the same epoch never move backwards: a
   * WebSocket welcomed while SSE was still delivering may start behind what we processed.
   */
  welcome(stream, epoch, seq) {
    const p = this.get(stream);
    if (!p || p.epoch !== epoch || seq > p.seq) this.set(stream, { epoch, seq });
  }

  /** An event at `seq` seen on a link whose epoch (of that stream) is `epoch` (null: not known yet). */
  isDuplicate(stream, epoch, seq) {
    const p = this.get(stream);
    return !!p && (epoch === null || epoch === p.epoch) && seq <= p.seq;
  }

  /** The app processed the event at `seq` of `epoch` (null: the position's epoch). */
  processed(stream, epoch, seq) {
    const e = epoch ?? this.get(stream)?.epoch ?? null;
    if (e !== null) this.set(stream, { epoch: e, seq });
  }

  /** After the app reloaded its state: continue from exactly there, even backwards. */
  resync(stream, epoch, seq) {
    this.set(stream, { epoch, seq });
  }

  /** The `since` text for a (re)connect, or null (no user position yet). */
  resumePoint() {
    return formatResumePoint(this.positions.user, this.positions.broadcast);
  }

  load() {
    try {
      const raw = this.storage.getItem(this.key);
      if (!raw) return null;
      const v = JSON.parse(raw);
      if (!v || typeof v !== "object") return null;
      const user = stored(v.epoch, v.seq);
      return {
        device: typeof v.device === "string" && DEVICE_RE.test(v.device) ? v.device : null,
        user,
        broadcast: user ? stored(v.bepoch, v.bseq) : null,
      };
    } catch {
      return null;
    }
  }

  save() {
    if (!this.persist || !this.storage) return;
    const v = { device: this.device };
    const { user, broadcast } = this.positions;
    if (user) {
      v.epoch = user.epoch;
      v.seq = user.seq;
    }
    if (broadcast) {
      v.bepoch = broadcast.epoch;
      v.bseq = broadcast.seq;
    }
    try {
      this.storage.setItem(this.key, JSON.stringify(v));
    } catch {
      // quota or privacy mode: run without persistence
    }
  }
}
