// The token: a fixed string, or a hook (getToken / token as a function) asked before connects.

export class Token {
  constructor({ token, getToken }) {
    if (getToken !== undefined && typeof getToken !== "function") {
      throw new TypeError("getToken must be a function");
    }
    if (getToken === undefined && (token === undefined || token === null)) {
      throw new TypeError("token or getToken is required");
    }
    this.source = getToken ?? token;
    this.value = typeof token === "string" ? token : null; // last one used (SSE POSTs send it)
    this.pending = null; // a refresh started early (4002), taken by the next connect
  }

  /** A fixed string cannot be refreshed: an expired one stays expired. */
  get canRefresh() {
    return typeof this.source === "function";
  }

  fetch() {
    const p = (async () => {
      const src = this.source;
      const t = typeof src === "function" ? await src() : src;
      if (typeof t !== "string" || t === "") throw new Error("token hook returned no token");
      this.value = t;
      return t;
    })();
    p.catch(() => {}); // awaited later; don't report an early rejection as unhandled
    return p;
  }

  /** Ask the hook now (right after a 4002), not when the backoff delay is over. */
  refresh() {
    this.pending = this.fetch();
  }

  /** The token for the connect about to happen. */
  take() {
    const p = this.pending ?? this.fetch();
    this.pending = null;
    return p;
  }
}
