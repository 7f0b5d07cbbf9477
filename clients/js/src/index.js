// TaskSync browser client: plain ES modules, no dependencies, no build step.
//
// Speaks the client protocol of docs/protocol.md over WebSocket (/ws, JSON frames) with a
// Server-Sent Events fallback (/sse + small authenticated POSTs). Keeps the resume position
// (epoch:seq of the user stream, bepoch:bseq of the shared broadcast stream), reconnects following
// the close-code table (codes.js decide()), coalesces acks (user seqs only) and drops duplicate
// events of either stream. Every platform object (WebSocket, EventSource, fetch, timers, random,
// clock, storage) can be injected, which is how the Node tests run it.
//
//   client.js         TaskSyncClient, the public class
//   session.js        connection lifecycle: reconnects, SSE fallback, WebSocket probe
//   dispatch.js       server frames in order, dedupe, resync, coalesced acks
//   transport_ws.js   /ws link (heartbeat watchdog)    transport_sse.js  /sse link (+ POSTs)
//   link.js           what both links share            codes.js          close codes + decide()
//   backoff.js        jittered exponential backoff     position.js       positions, device, storage
//   filters.js        filters and subscriptions        urls.js           gateway URL list
//   token.js          token / token hook               emitter.js        application handlers

export { TaskSyncClient, TaskSyncClient as default } from "./client.js";
export { CLOSE_CODES, EVENT_TYPES, SUBPROTOCOL_JSON, decide } from "./codes.js";
export { normalizeFilters } from "./filters.js";
