// The resume position (epoch:seq of the last event handed to the app) and the device id,
// optionally kept in (session) storage so a page reload resumes where it left off.

export const DEVICE_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

export function isSeq(v) {
  return Number.isSafeInteger(v) && v >= 0;
}

export function randomId(random, n = 16) {
  const abc = "abcdefghijklmnopqrstuvwxyz0123456789";
  let s = "";
  for (let i = 0; i < n; i++) s += abc[Math.floor(random() * abc.length) % abc.length];
  return s;
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null; // the getter itself throws in sandboxed frames
  } catch {
    return null;
  }
}

export class Position {
  /**
   * persist: read/write `storage` (default sessionStorage) under `key`; device: an explicit id
   * (wins over a stored one); random: for a fresh device id.
   */
  constructor({ persist = false, storage, key, device, random }) {
    this.persist = !!persist;
    this.storage = storage ?? (this.persist ? defaultStorage() : null);
    this.key = key;
    this.value = null; // {epoch, seq} or null
    let storedDevice = null;
    if (this.persist && this.storage) {
      const saved = this.load();
      if (saved) {
        storedDevice = saved.device;
        this.value = saved.pos;
      }
    }
    const d = device ?? storedDevice ?? randomId(random);
    if (typeof d !== "string" || !DEVICE_RE.test(d)) {
      throw new TypeError("device must be 1-64 chars of [A-Za-z0-9_.:-]");
    }
    this.device = d;
    this.save();
  }

  set(pos) {
    this.value = pos;
    this.save();
  }

  /** An event at `seq` seen on a link whose epoch is `epoch` (null: not known yet). */
  isDuplicate(epoch, seq) {
    const p = this.value;
    return !!p && (epoch === null || epoch === p.epoch) && seq <= p.seq;
  }

  load() {
    try {
      const raw = this.storage.getItem(this.key);
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

  save() {
    if (!this.persist || !this.storage) return;
    const v = { device: this.device };
    if (this.value) {
      v.epoch = this.value.epoch;
      v.seq = this.value.seq;
    }
    try {
      this.storage.setItem(this.key, JSON.stringify(v));
    } catch {
      // quota or privacy mode: run without persistence
    }
  }
}
