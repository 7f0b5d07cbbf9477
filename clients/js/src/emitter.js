// Application handlers: per event type ("*" for all), resync, state and error. A throwing
// handler never stops the client; its error goes to the error handlers.

export class Handlers {
  constructor() {
    this.byType = new Map();
    this.resync = new Set();
    this.state = new Set();
    this.error = new Set();
  }

  on(type, fn) {
    if (typeof type !== "string" || typeof fn !== "function") {
      throw new TypeError("on(type: string, handler: function)");
    }
    let set = this.byType.get(type);
    if (!set) this.byType.set(type, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  add(set, fn) {
    if (typeof fn !== "function") throw new TypeError("handler must be a function");
    set.add(fn);
    return () => set.delete(fn);
  }

  emit(type, arg) {
    const set = this.byType.get(type);
    if (!set) return;
    for (const fn of [...set]) this.call(fn, arg);
  }

  emitState(state, info) {
    for (const fn of [...this.state]) this.call(fn, state, { ...info });
  }

  /** Call the resync handlers; returns the promises of those that answered with one. */
  emitResync(frame) {
    const pending = [];
    for (const fn of [...this.resync]) {
      const r = this.call(fn, frame);
      if (r !== null && (typeof r === "object" || typeof r === "function") && typeof r.then === "function") {
        pending.push(r);
      }
    }
    return pending;
  }

  emitError(frame) {
    for (const fn of [...this.error]) {
      try {
        fn(frame);
      } catch {
        // an error handler's own failure has nowhere left to go
      }
    }
  }

  call(fn, a, b) {
    try {
      return fn(a, b);
    } catch (e) {
      this.emitError({ type: "error", code: "handler_error", message: String(e?.message ?? e), error: e });
      return undefined;
    }
  }
}
