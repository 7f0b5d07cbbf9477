// Event filters (subscribe frames) and the client-side bookkeeping of subscriptions.

const FILTER_KEYS = ["types", "task_ids", "list_ids"];

/** Validate and copy a filter object {types?, task_ids?, list_ids?}. */
export function normalizeFilters(filters) {
  if (filters === null || typeof filters !== "object" || Array.isArray(filters)) {
    throw new TypeError("filters must be an object {types?, task_ids?, list_ids?}");
  }
  const out = {};
  for (const key of Object.keys(filters)) {
    if (!FILTER_KEYS.includes(key)) throw new TypeError(`unknown filter key ${JSON.stringify(key)}`);
  }
  for (const key of FILTER_KEYS) {
    const v = filters[key];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v)) throw new TypeError(`filters.${key} must be an array`);
    if (key === "types") {
      for (const t of v) {
        if (typeof t !== "string") throw new TypeError("filters.types items must be strings");
      }
      out.types = [...v];
    } else {
      out[key] = v.map((x) => {
        if (typeof x !== "string" && typeof x !== "number") {
          throw new TypeError(`filters.${key} items must be strings or numbers`);
        }
        return String(x);
      });
    }
  }
  return out;
}

export function checkScope(scope) {
  if (scope !== "connection" && scope !== "user") {
    throw new TypeError('scope must be "connection" or "user"');
  }
  return scope;
}

/**
 * Connection-scope filters are kept here and re-sent after every welcome; user-scope requests
 * made while offline wait here until the next welcome.
 */
export class Subscriptions {
  constructor(filters) {
    this.connFilters = filters ? normalizeFilters(filters) : null;
    this.queued = []; // {frame, resolve}
  }

  /** The frame for subscribe(filters, {scope}), remembering connection-scope filters. */
  subscribeFrame(filters, scope) {
    checkScope(scope);
    const f = normalizeFilters(filters);
    if (scope === "connection") this.connFilters = f;
    return { type: "subscribe", filters: f, scope };
  }

  unsubscribeFrame(scope) {
    checkScope(scope);
    if (scope === "connection") this.connFilters = null;
    return { type: "unsubscribe", scope };
  }

  /** Send now on a welcomed link, or queue (user scope) / give up (connection scope: re-sent later). */
  send(link, frame, queueIfOffline) {
    if (link && link.welcomed && !link.dead) return link.deliver(frame);
    if (queueIfOffline) return new Promise((resolve) => this.queued.push({ frame, resolve }));
    return Promise.resolve(false);
  }

  /** After a welcome: the connection filters again, then whatever was queued. */
  replay(link) {
    if (this.connFilters) {
      link.deliver({ type: "subscribe", filters: this.connFilters, scope: "connection" });
    }
    for (const q of this.queued.splice(0)) {
      link.deliver(q.frame).then(q.resolve, () => q.resolve(false));
    }
  }

  /** The client stopped: queued requests never reached the server. */
  dropQueued() {
    for (const q of this.queued.splice(0)) q.resolve(false);
  }
}
