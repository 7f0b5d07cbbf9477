// Gateway URLs: one or several equivalent replicas, and the query string of a connect.

/** One gateway: the base URL as given plus its http(s):// and ws(s):// forms. */
export function endpointOf(url) {
  const base = String(url).replace(/\/+$/, "");
  const u = new URL(base);
  const httpProto = { "http:": "http:", "https:": "https:", "ws:": "http:", "wss:": "https:" }[u.protocol];
  if (!httpProto) throw new TypeError(`unsupported url scheme ${u.protocol}`);
  const path = u.pathname.replace(/\/+$/, "");
  return {
    base,
    http: `${httpProto}//${u.host}${path}`,
    ws: `${httpProto === "https:" ? "wss:" : "ws:"}//${u.host}${path}`,
  };
}

/** The gateway list; rotate() moves to the next one, round-robin. */
export class Endpoints {
  constructor(url) {
    const urls = Array.isArray(url) ? url : [url];
    if (urls.length === 0 || urls.some((x) => !x)) throw new TypeError("url is required");
    this.list = urls.map(endpointOf);
    this.index = 0;
  }

  get first() {
    return this.list[0];
  }

  get current() {
    return this.list[this.index];
  }

  rotate() {
    this.index = (this.index + 1) % this.list.length;
  }
}

/**
 * token, device and (when known) since for /ws and /sse. `since` is the resume point text,
 * `epoch:seq` or `epoch:seq,bepoch:bseq` (position.js resumePoint()).
 */
export function connectQuery(token, device, since) {
  const q = new URLSearchParams();
  q.set("token", token);
  q.set("device", device);
  q.set("batch", "1"); // queued event frames may arrive as one `batch` message (dispatch.js)
  if (since) q.set("since", since);
  return q.toString();
}
