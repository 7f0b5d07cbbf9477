// Protocol constants and the close-code catalogue of docs/protocol.md ("Close codes").

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

// Reconnect at once (no backoff), once in a row, for these.
export const IMMEDIATE_CODES = new Set([4010, SERVER_SHUTDOWN]);

/**
 * SSE error-frame codes that are also ordinary (non-closing) error codes: they only mean a close
 * when the stream actually ends right after them.
 */
export const AMBIGUOUS_SSE_NAMES = Object.freeze(new Set(["frame_too_large", "rate_limited", "unavailable"]));

/** The catalogue entry an SSE `error` frame's `code` stands for (null: not a close name). */
export function closeForName(name) {
  const entry = Object.hasOwn(BY_NAME, name) ? BY_NAME[name] : null;
  return entry && entry.code !== NORMAL ? entry : null;
}
