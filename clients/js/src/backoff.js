// Jittered exponential backoff for reconnects, counting the failed attempts in a row.

export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 250, maxMs: 10000, factor: 2, jitter: 0.5 });

export class Backoff {
  /** options: {initialMs, maxMs, factor, jitter}; random: () => [0, 1). */
  constructor(options = {}, random = Math.random) {
    const o = { ...DEFAULT_BACKOFF, ...(options ?? {}) };
    this.initialMs = o.initialMs;
    this.maxMs = o.maxMs;
    this.factor = o.factor;
    this.jitter = o.jitter;
    this.random = random;
    this.attempt = 0; // failed attempts since the last welcome
    this.immediateUsed = false; // an "at once" reconnect was used since the last welcome
  }

  /**
   * Delay of attempt n (1-based): initialMs * factor^(n-1) capped at maxMs, then shortened by up
   * to `jitter` (a fraction) so clients dropped together do not all come back in the same instant.
   */
  delay(attempt) {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** Math.max(0, attempt - 1));
    const j = Math.min(1, Math.max(0, this.jitter));
    return Math.round(base * (1 - j * this.random()));
  }

  /** Count one more failed attempt and return the wait before the next (0 for one immediate). */
  next(immediate = false) {
    this.attempt += 1;
    if (immediate && !this.immediateUsed) {
      this.immediateUsed = true;
      return 0;
    }
    return this.delay(this.attempt);
  }

  /** Count an attempt that someone else retries (the browser's own EventSource reconnect). */
  count() {
    this.attempt += 1;
  }

  /** A link reached welcome (or connect() was called): start again from the initial delay. */
  reset() {
    this.attempt = 0;
    this.immediateUsed = false;
  }
}
