// Live task board for one signed-in demo user. No build step, no dependencies besides the TaskSync
// browser client the gateway serves at /client/ (ES modules; index.js re-exports the API).
//
// Query parameters:
//   token       JWT of the user (HS256 demo token; `sub` is the user id)
//   api         base URL of the demo task API (default: this host, port 8010)
//   gateways    comma-separated gateway base URLs (default: this page's origin); the client
//               moves on to the next one whenever a connection is lost
//   transports  optional, comma-separated "websocket,sse" (default both, WebSocket first)
//   device      optional device id (default: kept in sessionStorage)
//
// Everything the page knows is mirrored in window.__board for the browser tests.

import { TaskSyncClient } from "/client/index.js";

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const now = () => performance.timeOrigin + performance.now();
const LABEL = { websocket: "WebSocket", sse: "SSE" };
const LOG_MAX = 200;

const board = {
  user: null,
  api: null,
  gateways: [],
  tasks: {}, // id -> task, as the task API / the events describe it
  events: [], // {seq, type, id, task_id, at, data} in the order handlers got them
  seqs: [],
  bseqs: [], // broadcast stream seqs, in order
  duplicates: 0, // events whose seq was not above the previous one (must stay 0)
  stale: 0, // events older (by task version) than what the board shows: not applied
  transport: null,
  state: "idle",
  url: null, // gateway in use
  states: [], // {state, transport, url, attempt, code, reason, at}
  restored: null, // position read from sessionStorage when the page loaded
  position: null,
  loads: 0,
  resyncs: [],
  errors: [],
  ready: false, // first task list loaded
};
window.__board = board;

function decodeSub(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
    return JSON.parse(json).sub ?? null;
  } catch {
    return null;
  }
}

function csv(s) {
  return (s ?? "").split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
}

// -- rendering -----------------------------------------------------------------------------

let renderQueued = false;
const flash = new Set();

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    render();
  });
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

const editing = new Set();

function taskItem(t) {
  const id = String(t.id);
  const li = el("li", { "data-testid": `task-${id}`, "data-id": id, "data-completed": String(!!t.completed) });
  if (t.completed) li.classList.add("done");
  if (flash.has(id)) li.classList.add("flash");
  if (editing.has(id)) {
    const input = el("input", { "data-testid": `edit-input-${id}`, value: t.title ?? "", maxlength: "200" });
    const save = el("button", { "data-testid": `save-${id}`, onclick: () => saveTitle(id, input.value) }, "Save");
    const cancel = el("button", { onclick: () => { editing.delete(id); scheduleRender(); } }, "Cancel");
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") saveTitle(id, input.value);
    });
    li.append(el("span", { class: "title" }, input), el("span", { class: "actions" }, save, cancel));
    return li;
  }
  const shared = Array.isArray(t.shared_with) && t.shared_with.length ? ` · shared with ${t.shared_with.join(", ")}` : "";
  const owner = t.owner_id ? ` · by ${t.owner_id}` : "";
  li.append(
    el("span", { class: "title", "data-testid": `title-${id}` }, String(t.title ?? `task ${id}`)),
    el("span", { class: "meta" }, `#${id}${owner}${shared}`),
    el("span", { class: "actions" },
      el("button", { "data-testid": `complete-${id}`, onclick: () => patch(id, { completed: true }), ...(t.completed ? { disabled: "" } : {}) }, "Complete"),
      el("button", { "data-testid": `edit-${id}`, onclick: () => { editing.add(id); scheduleRender(); } }, "Edit"),
      el("button", { "data-testid": `delete-${id}`, onclick: () => remove(id) }, "Delete"),
    ),
  );
  return li;
}

function render() {
  const list = $("#tasks");
  const tasks = Object.values(board.tasks).sort((a, b) => String(a.id).localeCompare(String(b.id), undefined, { numeric: true }));
  list.replaceChildren(...tasks.map(taskItem));
  $("#empty").hidden = tasks.length > 0;
  flash.clear();
}

function showBadge() {
  const b = $("#badge");
  const label = LABEL[board.transport] ?? board.transport ?? "";
  b.dataset.transport = board.transport ?? "";
  b.dataset.state = board.state;
  b.textContent = label ? `${label} · ${board.state}` : board.state;
  b.title = board.url ? `gateway ${board.url}` : "";
  $("#conn").textContent = board.url ? `via ${board.url}` : "";
}

function logLine(text) {
  const log = $("#log");
  log.prepend(el("li", {}, text));
  while (log.children.length > LOG_MAX) log.lastChild.remove();
}

function status(text, isError = false) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

// -- task API ------------------------------------------------------------------------------

let token = null;

async function api(method, path, body) {
  const res = await fetch(`${board.api}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) {
    let detail = "";
    try {
      detail = (await res.json()).detail ?? "";
    } catch {
      // not JSON
    }
    throw new Error(`${method} ${path}: HTTP ${res.status} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return res.status === 204 ? null : res.json();
}

async function action(label, fn) {
  try {
    await fn();
    status(`${label}: sent; waiting for the live event`);
  } catch (e) {
    board.errors.push({ at: now(), where: label, message: String(e.message ?? e) });
    status(String(e.message ?? e), true);
  }
}

function patch(id, changes) {
  return action(changes.completed ? `complete #${id}` : `update #${id}`, () => api("PATCH", `/tasks/${encodeURIComponent(id)}`, changes));
}

function saveTitle(id, title) {
  editing.delete(id);
  scheduleRender();
  if (!title.trim()) return Promise.resolve();
  return patch(id, { title: title.trim() });
}

function remove(id) {
  return action(`delete #${id}`, () => api("DELETE", `/tasks/${encodeURIComponent(id)}`));
}

async function loadTasks() {
  const list = await api("GET", "/tasks");
  board.tasks = Object.fromEntries(list.map((t) => [String(t.id), t]));
  board.loads += 1;
  scheduleRender();
}

// -- live events ---------------------------------------------------------------------------

const deletedAt = {}; // id -> version of the delete

function apply(e) {
  const id = String(e.data?.id);
  // The task API numbers every change of a task. Redelivery after a crash can bring an older
  // change after a newer one (in seq order, which is delivery order): never go back in version.
  const v = e.data?.version;
  if (Number.isFinite(v)) {
    const seen = board.tasks[id]?.version ?? deletedAt[id];
    if (Number.isFinite(seen) && v <= seen) {
      board.stale += 1;
      return;
    }
  }
  if (e.type === "task_deleted") {
    delete board.tasks[id];
    editing.delete(id);
    if (Number.isFinite(v)) deletedAt[id] = v;
  } else {
    board.tasks[id] = { ...(board.tasks[id] ?? {}), ...e.data };
    flash.add(id);
  }
  scheduleRender();
}

function start() {
  token = params.get("token");
  board.user = token ? decodeSub(token) : null;
  board.api = (params.get("api") || `${location.protocol}//${location.hostname}:8010`).replace(/\/+$/, "");
  board.gateways = csv(params.get("gateways"));
  if (board.gateways.length === 0) board.gateways = [location.origin];
  if (!token || !board.user) {
    $("#signin").hidden = false;
    $("#signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      const q = new URLSearchParams();
      for (const k of ["token", "api", "gateways"]) if (f.get(k)) q.set(k, f.get(k));
      location.search = q.toString();
    });
    return;
  }
  $("#user").textContent = `signed in as ${board.user}`;
  $("#board").hidden = false;

  // Position and device per user, so another token in the same tab starts its own stream.
  const storage = {
    getItem: (k) => sessionStorage.getItem(`${k}:${board.user}`),
    setItem: (k, v) => sessionStorage.setItem(`${k}:${board.user}`, v),
    removeItem: (k) => sessionStorage.removeItem(`${k}:${board.user}`),
  };
  const options = { url: board.gateways, token, persist: true, storage };
  const transports = csv(params.get("transports"));
  if (transports.length) options.transports = transports;
  if (params.get("device")) options.device = params.get("device");
  const client = new TaskSyncClient(options);
  window.__client = client;
  board.device = client.device;
  board.restored = client.position;

  let loaded = false;
  const early = []; // events that arrive before the first task list: applied after it
  let lastSeq = client.position?.seq ?? -1; // same epoch until a resync moves it

  let lastBseq = client.broadcastPosition?.seq ?? -1;

  client.on("*", (e) => {
    const at = now();
    if ("bseq" in e) {
      // The shared broadcast stream: its own sequence, counted apart from the user's.
      if (e.bseq <= lastBseq) board.duplicates += 1;
      lastBseq = e.bseq;
      board.bseqs.push(e.bseq);
      board.events.push({ bseq: e.bseq, type: e.type, id: e.id, task_id: e.data?.id, at, data: e.data, url: client.url, transport: client.transport });
      logLine(`broadcast ${e.bseq}  ${e.type}  #${e.data?.id ?? "?"}  ${e.data?.title ?? ""}`);
      if (loaded) apply(e);
      else early.push(e);
      return;
    }
    if (e.seq <= lastSeq) board.duplicates += 1;
    lastSeq = e.seq;
    board.position = { epoch: client.position?.epoch ?? null, seq: e.seq }; // the client's, once handlers return
    board.seqs.push(e.seq);
    board.events.push({ seq: e.seq, type: e.type, id: e.id, task_id: e.data?.id, at, data: e.data, url: client.url, transport: client.transport });
    logLine(`seq ${e.seq}  ${e.type}  #${e.data?.id ?? "?"}  ${e.data?.title ?? ""}`);
    if (loaded) apply(e);
    else early.push(e);
  });
  client.onResync(async (frame) => {
    board.resyncs.push({ at: now(), epoch: frame.epoch, seq: frame.seq, reason: frame.reason, stream: frame.stream ?? "user" });
    logLine(`resync_required (${frame.reason ?? ""}): reloading the task list`);
    if (frame.stream === "broadcast") lastBseq = frame.seq;
    else lastSeq = frame.seq;
    await loadTasks();
  });
  client.onState((state, info) => {
    board.state = state;
    board.transport = info.transport ?? client.transport;
    board.url = client.url;
    board.position = client.position;
    board.states.push({ state, transport: board.transport, url: board.url, attempt: info.attempt, code: info.code, reason: info.reason, at: now() });
    if (state !== "open") logLine(`${state} ${LABEL[board.transport] ?? ""} ${info.reason ?? ""} ${info.code ?? ""}`.trim());
    else logLine(`open ${LABEL[board.transport]} via ${board.url}`);
    showBadge();
  });
  client.onError((f) => {
    board.errors.push({ at: now(), where: "stream", code: f.code, message: f.message });
  });

  $("#create-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const title = $("#new-title").value.trim();
    const shared = csv($("#new-share").value);
    if (!title) return;
    action(`create "${title}"`, async () => {
      await api("POST", "/tasks", { title, shared_with: shared });
      $("#new-title").value = "";
    });
  });
  // Flush the last ack and say goodbye; the position stays in sessionStorage for the reload.
  addEventListener("pagehide", () => client.close());

  client.connect();
  loadTasks()
    .catch((e) => {
      board.errors.push({ at: now(), where: "load", message: String(e.message ?? e) });
      status(String(e.message ?? e), true);
    })
    .finally(() => {
      loaded = true;
      for (const e of early.splice(0)) apply(e);
      board.ready = true;
      scheduleRender();
    });
}

start();
