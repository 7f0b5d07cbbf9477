// The close-code catalogue and the reconnect policy, checked against the table the server is
// built from: "## Close codes" in docs/protocol.md (gateway/protocol.py follows the same table).
// Nothing here hard-codes the codes: every row of the table is checked, and every code of the
// client must be a row.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { CLOSE_CODES, decide } from "../src/index.js";
import { closeForName, isWsConnectFailure } from "../src/codes.js";
import { setup, settle, openWs } from "./fakes.js";

const DOC = new URL("../../../docs/protocol.md", import.meta.url);

function yesNo(cell, where) {
  if (cell === "yes") return true;
  if (cell === "no") return false;
  if (cell === "–" || cell === "-") return null;
  throw new Error(`${where}: expected yes, no or a dash, got ${JSON.stringify(cell)}`);
}

/** The rows of the first table under "## Close codes". */
function closeCodeTable(markdown) {
  const lines = markdown.split("\n");
  const start = lines.findIndex((l) => /^## Close codes\s*$/.test(l));
  assert.ok(start >= 0, "docs/protocol.md has a '## Close codes' section");
  let i = start + 1;
  while (i < lines.length && !lines[i].startsWith("|")) {
    assert.ok(!lines[i].startsWith("#"), "the table comes before the next heading");
    i += 1;
  }
  const raw = [];
  while (i < lines.length && lines[i].startsWith("|")) raw.push(lines[i++]);
  const cells = (l) => l.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  assert.deepEqual(cells(raw[0]), ["code", "name", "reconnect?", "resume?", "client action"]);
  assert.ok(cells(raw[1]).every((c) => /^:?-{3,}:?$/.test(c)), "separator row");
  const rows = raw.slice(2).map(cells).map((c, n) => {
    assert.equal(c.length, 5, `row ${n + 1}: ${c.join(" | ")}`);
    const [code, name, reconnect, resume, action] = c;
    assert.match(code, /^\d{4}$/);
    return {
      code: Number(code), name, action,
      reconnect: yesNo(reconnect, `${code} reconnect?`),
      resume: yesNo(resume, `${code} resume?`),
    };
  });
  assert.ok(rows.length > 0, "the table has rows");
  return rows;
}

const ROWS = closeCodeTable(readFileSync(DOC, "utf8"));

// What the "client action" column asks for, in the words the table uses.
const atOnce = (row) => /\bat once\b/.test(row.action);
const refresh = (row) => /\brefresh the token\b/.test(row.action);
const anyReplica = (row) => /\bany replica\b/.test(row.action);

test("catalogue: the same codes as the table, no more, no fewer", () => {
  assert.deepEqual(Object.keys(CLOSE_CODES).map(Number).sort(), ROWS.map((r) => r.code).sort());
  assert.equal(new Set(ROWS.map((r) => r.code)).size, ROWS.length, "no code twice in the table");
});

test("catalogue: name, reconnect, resume and action of every row", () => {
  for (const row of ROWS) {
    const entry = CLOSE_CODES[row.code];
    assert.equal(entry.code, row.code);
    assert.equal(entry.name, row.name, `${row.code} name`);
    assert.equal(row.reconnect === null, false, `${row.code}: reconnect? is yes or no`);
    assert.equal(entry.reconnect, row.reconnect, `${row.code} reconnect`);
    // A dash in resume? goes with reconnect? no: nothing to resume.
    assert.equal(row.resume === null, !row.reconnect, `${row.code}: dash in resume? iff no reconnect`);
    assert.equal(entry.resume, row.resume ?? false, `${row.code} resume`);
    assert.equal(entry.action, row.action, `${row.code} action`);
    assert.ok(Object.isFrozen(entry));
  }
});

test("policy: decide() follows every row of the table", () => {
  for (const row of ROWS) {
    for (const welcomed of [true, false]) {
      const d = decide(row.code, { welcomed });
      const where = `${row.code} ${row.name} (welcomed: ${welcomed})`;
      assert.equal(d.reconnect, row.reconnect, `${where}: reconnect`);
      assert.equal(d.immediate, row.reconnect && atOnce(row), `${where}: at once`);
      assert.equal(d.refreshToken, row.reconnect && refresh(row), `${where}: refresh the token`);
      // The server sent the code: it is alive; only "any replica" sends the client elsewhere.
      assert.equal(d.rotate, row.reconnect && anyReplica(row), `${where}: next gateway`);
    }
  }
});

test("policy: outside the catalogue (no close code, plain WebSocket codes, our own timeouts)", () => {
  const R = (immediate, rotate) => ({ reconnect: true, immediate, rotate, refreshToken: false });
  const cases = [
    [undefined, { welcomed: true }, R(false, false)], // a healthy link dropped: same gateway, backoff
    [undefined, { welcomed: false }, R(false, true)], // never connected: next gateway
    [1006, { welcomed: true }, R(false, false)],
    [1006, { welcomed: false }, R(false, true)],
    [1001, { welcomed: true }, R(false, true)], // plain "going away": like server_shutdown
    [1011, { welcomed: true }, R(false, false)],
    [4012, { welcomed: true, local: true }, R(false, false)], // our heartbeat watchdog
    [4013, { welcomed: false, local: true }, R(false, true)], // no welcome in time: hung replica
  ];
  for (const [code, how, expected] of cases) {
    assert.deepEqual({ ...decide(code, how) }, expected, `${code} ${JSON.stringify(how)}`);
  }
});

test("policy: what counts towards the SSE fallback", () => {
  const cases = [
    [undefined, { opened: false }, true], // refused, 404/403 handshake, DNS
    [1006, { opened: true }, true], // opened, then dropped without a close frame
    [4013, { opened: true, local: true }, true], // our own welcome timeout
    [4012, { opened: true, local: true }, false],
    ...ROWS.map((r) => [r.code, { opened: true }, false]), // the server answered with a catalogue code
    [undefined, { opened: true, welcomed: true }, false], // it worked once
  ];
  for (const [code, how, counts] of cases) {
    assert.equal(isWsConnectFailure(code, how), counts, `${code} ${JSON.stringify(how)}`);
  }
});

test("SSE error frames: every row's name stands for its code, except normal", () => {
  for (const row of ROWS) {
    assert.equal(closeForName(row.name)?.code ?? null, row.code === 1000 ? null : row.code, row.name);
  }
  for (const name of ["bad_field", "nonsense", "constructor", "__proto__", "toString"]) {
    assert.equal(closeForName(name), null, name);
  }
});

// The running client, closed by the server with each code of the table.
for (const row of ROWS) {
  test(`client: close ${row.code} ${row.name} is handled as the table says`, async () => {
    let hook = 0;
    const env = setup({
      url: ["http://gw-a.test:8001", "http://gw-b.test:8002"],
      token: undefined,
      getToken: async () => `tok-${++hook}`,
      random: () => 0,
    });
    env.client.connect();
    const ws = await openWs(env, 7);
    ws.serverClose(row.code, row.name);
    const [state, info] = env.states.at(-1);
    assert.equal(info.code, row.code);
    if (!row.reconnect) {
      assert.equal(state, "closed");
      await env.clock.advance(120000);
      assert.equal(env.sockets.length, 1, "no reconnect");
      return;
    }
    assert.equal(state, "reconnecting");
    assert.equal(info.delayMs === 0, atOnce(row), `delay ${info.delayMs}`);
    await settle();
    assert.equal(hook, refresh(row) ? 2 : 1, "a refresh asks the token hook at the close, before the delay");
    await env.clock.advance(info.delayMs);
    assert.equal(env.sockets.length, 2, "reconnected");
    const next = env.lastWs();
    assert.equal(next.params.get("since"), row.resume ? "E1:7" : null, "resume from the position");
    assert.equal(new URL(next.url).host, anyReplica(row) ? "gw-b.test:8002" : "gw-a.test:8001", "gateway");
    assert.equal(next.params.get("token"), "tok-2");
    assert.equal(hook, 2, "one hook call per connect");
  });
}
