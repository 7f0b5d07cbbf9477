#!/usr/bin/env node
// Browser driver for the e2e tests: `node tests/e2e/browser_driver.mjs <scenario> <json args>`.
//
// Drives Debian's chromium (never a downloaded browser) through playwright-core against the live
// board (gateway/static/index.html) of a running topology. It only observes and reports: the
// last stdout line is {"result": {...}} (or {"error": "..."}), and the pytest side asserts on it.
// When the test must act in the middle of a scenario (kill a gateway), the driver prints
// {"need": "<what>", ...} and waits for one JSON line on stdin.
//
// Args (JSON): gateways [A, B], api, dapr (producer daprd base URL), daprToken, tokens {name: jwt},
// users {name: id}, artifacts (screenshot folder), timeoutMs, plus per-scenario options.

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import crypto from "node:crypto";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const [scenario, rawArgs = "{}"] = process.argv.slice(2);
const args = JSON.parse(rawArgs);
const log = (...a) => console.error(`[driver ${((performance.now()) / 1000).toFixed(2)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// -- control channel (stdin/stdout JSON lines) ------------------------------------------------

const lines = readline.createInterface({ input: process.stdin });
const inbox = [];
const waiters = [];
lines.on("line", (l) => (waiters.length ? waiters.shift()(l) : inbox.push(l)));

async function control(need, extra = {}, timeoutMs = 60000) {
  process.stdout.write(`${JSON.stringify({ need, ...extra })}\n`);
  const line = inbox.length ? inbox.shift() : await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer to ${need} within ${timeoutMs} ms`)), timeoutMs);
    waiters.push((l) => {
      clearTimeout(t);
      resolve(l);
    });
  });
  return JSON.parse(line);
}

// -- browser -----------------------------------------------------------------------------------

let context = null;
let profile = null;

async function launch() {
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "tasksync-e2e-chromium-"));
  // A persistent context is how playwright takes a --user-data-dir: a fresh one per run.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: false, // headless comes from --headless=new below
    args: CHROMIUM_ARGS,
    viewport: { width: 1100, height: 800 },
    timeout: 30000,
  });
  context.setDefaultTimeout(15000);
  return context;
}

async function shutdown() {
  try {
    if (context) await context.close();
  } catch (e) {
    log("closing the browser:", e.message);
  }
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
}

function boardUrl({ origin, gateways, token, transports }) {
  const q = new URLSearchParams({ token, api: args.api, gateways: gateways.join(",") });
  if (transports) q.set("transports", transports);
  return `${origin}/?${q}`;
}

const pages = [];

async function openBoard(name, opts) {
  const page = pages.length === 0 && context.pages().length ? context.pages()[0] : await context.newPage();
  pages.push(page);
  page.__name = name;
  page.__console = [];
  page.__frames = []; // JSON frames the browser received on WebSockets (welcome etc.)
  page.on("console", (m) => page.__console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => page.__console.push(`pageerror: ${e.message}`));
  page.on("websocket", (ws) => {
    ws.on("framereceived", ({ payload }) => {
      if (typeof payload !== "string") return;
      try {
        const f = JSON.parse(payload);
        if (f.type !== "ping" && f.type !== "pong") page.__frames.push({ url: ws.url().split("?")[0], at: Date.now(), ...pick(f) });
      } catch {
        // not JSON
      }
    });
  });
  if (opts.beforeGoto) await opts.beforeGoto(page);
  await page.goto(boardUrl(opts), { waitUntil: "load" });
  await waitBoard(page, "b.ready && b.state === 'open'", 20000, `${name}: board loaded and stream open`);
  return page;
}

function pick(f) {
  const { type, seq, epoch, resumed, reason, code } = f;
  return { type, seq, epoch, resumed, reason, code };
}

/** Bounded wait on a condition over window.__board (named `b`); throws with a snapshot. */
async function waitBoard(page, cond, timeoutMs, what, arg = null) {
  const fn = new Function("arg", `const b = window.__board; return !!b && (${cond});`);
  try {
    await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 25 });
  } catch (e) {
    const snap = await board(page).catch(() => null);
    const err = new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${cond}`);
    err.details = { page: page.__name, board: snap && summary(snap), console: page.__console.slice(-20) };
    throw err;
  }
}

/** A JSON copy of window.__board. */
function board(page) {
  return page.evaluate(() => JSON.parse(JSON.stringify(window.__board)));
}

function summary(b) {
  return {
    user: b.user, state: b.state, transport: b.transport, url: b.url, seqs: b.seqs,
    duplicates: b.duplicates, tasks: Object.keys(b.tasks), errors: b.errors, resyncs: b.resyncs,
    states: b.states.slice(-10), restored: b.restored,
  };
}

async function badge(page) {
  return page.locator("[data-testid=badge]").innerText();
}

async function shot(page, name) {
  if (!args.artifacts) return;
  fs.mkdirSync(args.artifacts, { recursive: true });
  await page.screenshot({ path: path.join(args.artifacts, `e2e-${name}.png`), fullPage: true });
}

// -- publishing --------------------------------------------------------------------------------

/** Publish one raw task event through the producer's daprd (as the todo app would). */
async function publish(type, data, audience) {
  const body = { event_id: crypto.randomUUID().replaceAll("-", ""), type, data, audience };
  const res = await fetch(`${args.dapr}/v1.0/publish/pubsub/task-updates`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "dapr-api-token": args.daprToken },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  if (res.status !== 204) throw new Error(`publish: HTTP ${res.status} ${await res.text()}`);
}

/** Call the demo task API as a user. */
async function taskApi(who, method, p, body) {
  const res = await fetch(`${args.api}${p}`, {
    method,
    headers: { Authorization: `Bearer ${args.tokens[who]}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(10000),
  });
  if (!res.ok) throw new Error(`${method} ${p}: HTTP ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : res.json();
}

// -- scenarios ---------------------------------------------------------------------------------

const scenarios = {};

/** a. Two users on two gateways; alice drives the UI; both boards follow every change. */
scenarios.live_ws = async () => {
  const [A, B] = args.gateways;
  const alice = await openBoard("alice", { origin: A, gateways: [A], token: args.tokens.alice });
  const bob = await openBoard("bob", { origin: B, gateways: [B], token: args.tokens.bob });
  const both = [alice, bob];
  const steps = [];
  const title = `Buy milk ${crypto.randomUUID().slice(0, 6)}`;
  const step = async (name, act, domCond) => {
    const t0 = Date.now();
    await act();
    const actMs = Date.now() - t0;
    const ok = {};
    for (const p of both) {
      try {
        await p.waitForFunction(domCond, null, { timeout: 10000, polling: 25 });
        ok[p.__name] = Date.now() - t0;
      } catch {
        ok[p.__name] = null;
      }
    }
    steps.push({ name, act_ms: actMs, ms: ok });
  };

  // The page being driven must be the visible tab: Playwright's actionability checks run on
  // animation frames, which a background tab only gets about once a second.
  await alice.bringToFront();
  // create (shared with bob) through the form
  await alice.fill("[data-testid=new-title]", title);
  await alice.fill("[data-testid=new-share]", args.users.bob);
  let id = null;
  await step("create", () => alice.click("[data-testid=create]"),
    new Function(`return [...document.querySelectorAll("[data-testid^=title-]")].some((e) => e.textContent === ${JSON.stringify(title)});`));
  const ab = await board(alice);
  id = Object.values(ab.tasks).find((t) => t.title === title)?.id ?? null;
  if (id === null) throw Object.assign(new Error("created task not on alice's board"), { details: summary(ab) });
  await shot(alice, "a-alice-created");
  await shot(bob, "a-bob-created");

  const sel = (what) => `[data-testid=${what}-${id}]`;
  const newTitle = `${title} (2 litres)`;
  await step("edit", async () => {
    await alice.click(sel("edit"));
    await alice.fill(sel("edit-input"), newTitle);
    await alice.click(sel("save"));
  }, new Function(`const e = document.querySelector(${JSON.stringify(sel("title"))}); return !!e && e.textContent === ${JSON.stringify(newTitle)};`));
  await step("complete", () => alice.click(sel("complete")),
    new Function(`const e = document.querySelector(${JSON.stringify(sel("task"))}); return !!e && e.dataset.completed === "true";`));
  await shot(bob, "a-bob-completed");
  await step("delete", () => alice.click(sel("delete")),
    new Function(`return document.querySelector(${JSON.stringify(sel("task"))}) === null;`));
  await shot(alice, "a-alice-deleted");
  await shot(bob, "a-bob-deleted");

  const out = { task_id: id, steps, pages: {} };
  for (const p of both) {
    const b = await board(p);
    out.pages[p.__name] = {
      ...summary(b),
      badge: await badge(p),
      types_for_task: b.events.filter((e) => String(e.task_id) === String(id)).map((e) => e.type),
      titles_for_task: b.events.filter((e) => String(e.task_id) === String(id)).map((e) => e.data?.title),
      task_on_board: String(id) in b.tasks,
      transports_seen: [...new Set(b.events.map((e) => e.transport))],
      console: p.__console.filter((l) => !l.startsWith("debug")).slice(-10),
    };
  }
  return out;
};

/** b. The WebSocket upgrade fails (as behind a proxy that refuses it): SSE, nothing lost. */
scenarios.sse_fallback = async () => {
  const [A] = args.gateways;
  const user = args.users.carol;
  const blocked = [];
  const page = await openBoard("carol", {
    origin: A, gateways: [A], token: args.tokens.carol,
    beforeGoto: (p) => p.routeWebSocket(/\/ws(\?|$)/, (ws) => {
      blocked.push(Date.now());
      ws.close({ code: 1006 }); // refused before open, like a failed upgrade
    }),
  });
  await waitBoard(page, "b.transport === 'sse'", 1000, "SSE transport");
  const n = args.events ?? 20;
  // Bursts of 5 concurrent publishes: the gateway must still number and order them.
  for (let i = 1; i <= n; i += 5) {
    await Promise.all([0, 1, 2, 3, 4].filter((k) => i + k <= n).map((k) =>
      publish("task_created", { id: i + k, title: `sse ${i + k}`, owner_id: user }, [user])));
  }
  let complete = true;
  try {
    await waitBoard(page, `b.seqs.length >= ${n}`, 20000, `${n} events over SSE`);
  } catch (e) {
    complete = false;
    log(e.message);
  }
  await sleep(1000); // anything extra (duplicates) would show up now
  await shot(page, "b-sse-fallback");
  const b = await board(page);
  return {
    complete,
    blocked_ws_attempts: blocked.length,
    badge: await badge(page),
    ...summary(b),
    task_ids: b.events.map((e) => e.task_id),
    transports_seen: [...new Set(b.events.map((e) => e.transport))],
    ws_frames_seen: page.__frames.length,
    console: page.__console.slice(-10),
  };
};

/** c. The gateway the page is connected to is SIGKILLed while events keep coming. */
scenarios.failover = async () => {
  const [A, B] = args.gateways;
  const user = args.users.dave;
  const page = await openBoard("dave", { origin: A, gateways: [A, B], token: args.tokens.dave });
  const first = await board(page);
  const n = args.events ?? 40;
  const killAfter = args.killAfter ?? 10;
  const rateMs = args.rateMs ?? 100;
  const inFlight = args.inFlight ?? 5;
  const published = [];
  let killedAt = null;
  for (let i = 1; i <= n; i++) {
    const t = Date.now();
    await publish("task_updated", { id: i, title: `failover ${i}`, owner_id: user, pub_ms: t }, [user]);
    published.push({ id: i, at: t });
    if (i === killAfter) {
      await waitBoard(page, `b.seqs.length >= ${killAfter}`, 10000, "events before the kill");
      // A burst right before the kill: some of it is still in flight (taken from the stream by
      // the daprd about to die) when the SIGKILL lands.
      const burst = [];
      for (let k = 1; k <= inFlight; k++) {
        burst.push(publish("task_updated", { id: 1000 + k, title: `in flight ${k}`, owner_id: user, pub_ms: Date.now() }, [user]));
      }
      await Promise.all(burst);
      const answer = await control("kill", { gateway: A });
      killedAt = answer.killed_at_ms;
      log("gateway killed at", killedAt);
    }
    const wait = rateMs - (Date.now() - t);
    if (wait > 0) await sleep(wait);
  }
  let complete = true;
  try {
    // Bounded by the pub/sub redelivery of a message the dead daprd had taken (30 s + 5 s).
    const want = n + inFlight;
    await waitBoard(page, `b.seqs.length >= ${want}`, args.settleMs ?? 55000, `all ${want} events after failover`);
  } catch (e) {
    complete = false;
    log(e.message);
  }
  await sleep(500);
  await shot(page, "c-failover");
  const b = await board(page);
  const after = b.events.filter((e) => e.at > killedAt);
  const firstAfter = after[0] ?? null;
  const openAfter = b.states.find((s) => s.state === "open" && s.at > killedAt) ?? null;
  return {
    complete,
    first_url: first.url,
    killed_at_ms: killedAt,
    badge: await badge(page),
    ...summary(b),
    states: b.states,
    task_ids: b.events.map((e) => e.task_id),
    urls_seen: b.events.map((e) => e.url),
    first_event_after_kill: firstAfter && { seq: firstAfter.seq, task_id: firstAfter.task_id, url: firstAfter.url, at: firstAfter.at, pub_ms: firstAfter.data?.pub_ms },
    open_after_kill: openAfter,
    kill_to_open_ms: openAfter ? openAfter.at - killedAt : null,
    kill_to_first_event_ms: firstAfter ? firstAfter.at - killedAt : null,
    // Events published after the kill and before the first event arrived on B: the outage window.
    published_after_kill_before_resume: firstAfter ? published.filter((p) => p.at > killedAt && p.at < firstAfter.at).length : null,
    max_delivery_ms: Math.max(...b.events.map((e) => e.at - (e.data?.pub_ms ?? e.at))),
    late: b.events.filter((e) => e.at - e.data?.pub_ms > 2000).map((e) => ({ seq: e.seq, task_id: e.task_id, delay_ms: Math.round(e.at - e.data.pub_ms) })),
    console: page.__console.slice(-10),
  };
};

/** d. Reload: position and device come back from sessionStorage; the stream resumes there. */
scenarios.reload = async () => {
  const [A, B] = args.gateways;
  const page = await openBoard("erin", { origin: A, gateways: [A, B], token: args.tokens.erin });
  const created = [];
  for (let i = 1; i <= 3; i++) created.push(await taskApi("erin", "POST", "/tasks", { title: `before reload ${i}` }));
  await waitBoard(page, "b.seqs.length >= 3", 10000, "3 events before the reload");
  const before = await board(page);
  const stored = await page.evaluate(() => ({ ...sessionStorage }));
  // A change made while no page is connected: the old document is gone (its pagehide closed
  // the client) and the new one is still loading the client module, held here until then.
  let during = 0;
  await page.route("**/client/index.js", async (route) => {
    created.push(await taskApi("erin", "POST", "/tasks", { title: "during reload" }));
    during += 1;
    await route.continue();
  });
  const framesBefore = page.__frames.length;
  await page.reload({ waitUntil: "load" });
  await waitBoard(page, "b.ready && b.state === 'open'", 15000, "board back after reload");
  created.push(await taskApi("erin", "POST", "/tasks", { title: "after reload" }));
  await taskApi("erin", "PATCH", `/tasks/${created[0].id}`, { completed: true });
  let complete = true;
  try {
    await waitBoard(page, "b.seqs.length >= 3", 10000, "3 events after the reload");
  } catch (e) {
    complete = false;
    log(e.message);
  }
  await sleep(800);
  await shot(page, "d-after-reload");
  const b = await board(page);
  const welcomes = page.__frames.slice(framesBefore).filter((f) => f.type === "welcome" || f.type === "resync_required");
  return {
    complete,
    before: { seqs: before.seqs, device: before.device, position: before.position },
    stored,
    after: { ...summary(b), device: b.device, events: b.events.map((e) => ({ seq: e.seq, type: e.type, task_id: e.task_id })) },
    welcomes_after_reload: welcomes,
    published_during_reload: during,
    created: created.map((t) => t.id),
    tasks_after: b.tasks,
  };
};

/** e. Latency from publish to the page's handler, WebSocket and SSE side by side. */
scenarios.latency = async () => {
  const [A] = args.gateways;
  const n = args.events ?? 50;
  const rateMs = args.rateMs ?? 100;
  const ws = await openBoard("ws", { origin: A, gateways: [A], token: args.tokens.frank });
  const sse = await openBoard("sse", { origin: A, gateways: [A], token: args.tokens.grace, transports: "sse" });
  await waitBoard(sse, "b.transport === 'sse'", 1000, "SSE page on SSE");
  await waitBoard(ws, "b.transport === 'websocket'", 1000, "WS page on WebSocket");
  for (let i = 1; i <= n; i++) {
    const t = Date.now();
    await Promise.all([
      publish("task_updated", { id: i, title: `lat ${i}`, owner_id: args.users.frank, pub_ms: Date.now() }, [args.users.frank]),
      publish("task_updated", { id: i, title: `lat ${i}`, owner_id: args.users.grace, pub_ms: Date.now() }, [args.users.grace]),
    ]);
    const wait = rateMs - (Date.now() - t);
    if (wait > 0) await sleep(wait);
  }
  const complete = {};
  for (const [name, p] of [["websocket", ws], ["sse", sse]]) {
    try {
      await waitBoard(p, `b.seqs.length >= ${n}`, 20000, `${n} events on ${name}`);
      complete[name] = true;
    } catch (e) {
      complete[name] = false;
      log(e.message);
    }
  }
  await shot(ws, "e-latency-ws");
  await shot(sse, "e-latency-sse");
  const out = { complete, pages: {} };
  for (const [name, p] of [["websocket", ws], ["sse", sse]]) {
    const b = await board(p);
    out.pages[name] = {
      ...summary(b),
      badge: await badge(p),
      latencies_ms: b.events.map((e) => e.at - e.data.pub_ms),
      task_ids: b.events.map((e) => e.task_id),
    };
  }
  return out;
};

/** Out-of-order redelivery (as after a crash): the board never goes back in task version. */
scenarios.stale_order = async () => {
  const [A] = args.gateways;
  const user = args.users.heidi;
  const page = await openBoard("heidi", { origin: A, gateways: [A], token: args.tokens.heidi });
  const t = (version, title) => ({ id: 7, title, owner_id: user, version });
  // Each publish waits for the previous event to arrive, so the seq (delivery) order is exactly
  // this one (back-to-back publishes may be recorded in either order: docs/architecture.md).
  const send = async (type, data, k) => {
    await publish(type, data, [user]);
    await waitBoard(page, `b.seqs.length >= ${k}`, 10000, `event ${k}`);
  };
  // v1, v3, then a late v2; a delete (v4), then a late create (v1).
  await send("task_created", t(1, "v1"), 1);
  await send("task_updated", t(3, "v3 newest"), 2);
  await send("task_updated", t(2, "v2 late"), 3);
  const afterUpdates = await board(page);
  await send("task_deleted", { id: 7, owner_id: user, version: 4 }, 4);
  await send("task_created", t(1, "v1 redelivered"), 5);
  const end = await board(page);
  return {
    title_after_updates: afterUpdates.tasks["7"]?.title ?? null,
    stale_after_updates: afterUpdates.stale,
    task_after_delete: end.tasks["7"] ?? null,
    stale: end.stale,
    seqs: end.seqs,
  };
};

// -- main --------------------------------------------------------------------------------------

async function main() {
  const run = scenarios[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(", ")}`);
  const limit = args.timeoutMs ?? 90000;
  let timer;
  const overall = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`scenario ${scenario} took longer than ${limit} ms`)), limit);
  });
  try {
    await launch();
    const result = await Promise.race([run(), overall]);
    process.stdout.write(`${JSON.stringify({ result })}\n`);
    return 0;
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ error: String(e?.message ?? e), details: e?.details ?? null, stack: e?.stack ?? null })}\n`);
    return 1;
  } finally {
    clearTimeout(timer);
    await Promise.race([shutdown(), sleep(10000)]);
    lines.close();
  }
}

process.exitCode = await main();
process.exit(process.exitCode);
