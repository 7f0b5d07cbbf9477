// Protocol constants and the close-code catalogue of docs/protocol.md ("Close codes"), plus the
// one reconnect policy of this client: decide(code, ...) says what to do when a link ends.
// test/codes.test.js checks both against the table in docs/protocol.md itself.

export const SUBPROTOCOL_JSON = "tasksync.json.v1";

export const EVENT_TYPES = Object.freeze([
  "task_created", "task_updated", "task_deleted", "task_completed",
]);

/** Close-code catalogue: code -> {code, name, reconnect, resume, action}. */
export const CLOSE_CODES = Object.freeze(Object.fromEntries([
  [1000, "normal", false, "closed on purpose"],
  [1009, "frame_too_large", true, "fix the sender, reconnect"],
  [4001, "unauthorized", false, "get a valid token first"],
  [4002, "token_expired", true, "refresh the token, then reconnect"],
  [4003, "forbidden_origin", false, "page origin not allowed"],
  [4004, "protocol_error", true, "repeated malformed frames; reconnect with backoff"],
  [4008, "rate_limited", true, "back off, reconnect"],
  [4009, "too_many_connections", true, "back off (another device/tab must close first)"],
  [4010, "slow_consumer", true, "reconnect at once and resume: nothing is lost"],
  [4011, "server_shutdown", true, "replica going away: reconnect (any replica) at once and resume"],
  [4012, "heartbeat_timeout", true, "no frame within the heartbeat timeout"],
  [4013, "handshake_timeout", true, "handshake too slow"],
  [4500, "internal_error", true, "back off, reconnect"],
  [4503, "unavailable", true, "session store unreachable, back off"],
].map(([code, name, reconnect, action]) => [code, Object.freeze({
  code, name, reconnect, resume: reconnect, action,
})])));

export const NORMAL = 1000;
export const GOING_AWAY = 1001; // a plain WebSocket "going away" (not in the catalogue)
export const TOKEN_EXPIRED = 4002;
export const SERVER_SHUTDOWN = 4011;
export const HEARTBEAT_TIMEOUT = 4012;
export const HANDSHAKE_TIMEOUT = 4013;

const BY_NAME = Object.freeze(Object.fromEntries(Object.values(CLOSE_CODES).map((c) => [c.name, c])));

// "at once" in the table: skip the backoff delay (once in a row; the next failure backs off).
const IMMEDIATE = new Set([4010, SERVER_SHUTDOWN]);
// "(any replica)" in the table, and the plain WebSocket equivalent: this replica is going away.
const ROTATE = new Set([SERVER_SHUTDOWN, GOING_AWAY]);

/**
 * SSE error-frame codes that are also ordinary (non-closing) error codes: they only mean a close
 * when the stream actually ends right after them.
 */
export const AMBIGUOUS_SSE_NAMES = Object.freeze(new Set(["frame_too_large", "rate_limited", "unavailable"]));

/**
 * What to do after a link ended.
 *   code      the close code (server's, or one the client synthesised: 4012/4013 timeouts);
 *             undefined/null when the transport failed without one (refused, reset, stream ended)
 *   welcomed  the link reached `welcome`
 *   local     the code was decided by this client (a timeout), not sent by the server
 * Returns {reconnect, immediate, rotate, refreshToken}:
 *   reconnect     the table's "reconnect?" column (anything outside the catalogue: yes)
 *   immediate     the table says "at once": no backoff delay, once in a row
 *   rotate        move to the next gateway URL: the table says "any replica", or the link never
 *                 reached welcome without a word from the server (a dead or unreachable replica)
 *   refreshToken  the table says "refresh the token" (4002): ask the token hook first
 */
export function decide(code, { welcomed = false, local = false } = {}) {
  const entry = code != null ? CLOSE_CODES[code] : undefined;
  if (entry && !entry.reconnect) {
    return Object.freeze({ reconnect: false, immediate: false, rotate: false, refreshToken: false });
  }
  return Object.freeze({
    reconnect: true,
    immediate: IMMEDIATE.has(code),
    rotate: ROTATE.has(code) || (!welcomed && (!entry || local)),
    refreshToken: code === TOKEN_EXPIRED,
  });
}

/**
 * Does a WebSocket that ended count towards the SSE fallback? Only when it never reached welcome
 * for a reason that points at the network path (refused, dropped without a close frame, or our own
 * welcome timeout), not a deliberate catalogue close by the server (4503 before welcome is the
 * server talking).
 */
export function isWsConnectFailure(code, { welcomed = false, opened = false, local = false } = {}) {
  if (welcomed) return false;
  if (!opened) return true;
  if (local) return code === HANDSHAKE_TIMEOUT;
  return code == null || !(code in CLOSE_CODES);
}

/** The catalogue entry an SSE `error` frame's `code` stands for (null: not a close name). */
export function closeForName(name) {
  const entry = Object.hasOwn(BY_NAME, name) ? BY_NAME[name] : null;
  return entry && entry.code !== NORMAL ? entry : null;
}
