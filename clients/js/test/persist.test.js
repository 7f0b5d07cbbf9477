import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, settle, welcome, ev, MemoryStorage } from "./fakes.js";

const KEY = "tasksync:http://gw.test:8001";

test("persist: position and device are written to storage on every change", async () => {
  const storage = new MemoryStorage();
  const env = setup({ persist: true, storage, device: undefined, random: () => 0.1 });
  const device = env.client.device;
  assert.match(device, /^[a-z0-9]{16}$/);
  assert.deepEqual(JSON.parse(storage.getItem(KEY)), { device }, "device kept before any position");
  env.client.connect();
  await settle();
  const ws = env.lastWs();
  assert.equal(ws.params.get("device"), device);
  ws.open();
  ws.receive(welcome(3));
  assert.deepEqual(JSON.parse(storage.getItem(KEY)), { device, epoch: "E1", seq: 3 });
  ws.receive(ev(4));
  assert.deepEqual(JSON.parse(storage.getItem(KEY)), { device, epoch: "E1", seq: 4 });
  ws.receive({ type: "resync_required", epoch: "E9", seq: 20, reason: "epoch_changed" });
  assert.deepEqual(JSON.parse(storage.getItem(KEY)), { device, epoch: "E9", seq: 20 });
});

test("persist: a new client (page reload) restores device and position and resumes from them", async () => {
  const storage = new MemoryStorage({ [KEY]: JSON.stringify({ device: "tab-42", epoch: "E5", seq: 99 }) });
  const env = setup({ persist: true, storage, device: undefined });
  assert.equal(env.client.device, "tab-42");
  assert.deepEqual(env.client.position, { epoch: "E5", seq: 99 });
  env.client.connect();
  await settle();
  assert.equal(env.lastWs().params.get("since"), "E5:99");
  assert.equal(env.lastWs().params.get("device"), "tab-42");
  const got = [];
  env.client.on("*", (e) => got.push(e.seq));
  env.lastWs().open();
  env.lastWs().receive(welcome(99, { epoch: "E5" }));
  env.lastWs().receive(ev(99));
  env.lastWs().receive(ev(100));
  assert.deepEqual(got, [100], "the restored position also dedups");
});

test("without persist nothing is read or written", async () => {
  const storage = new MemoryStorage({ [KEY]: JSON.stringify({ device: "tab-42", epoch: "E5", seq: 99 }) });
  const env = setup({ storage, device: undefined });
  assert.notEqual(env.client.device, "tab-42");
  assert.equal(env.client.position, null);
  env.client.connect();
  await settle();
  env.lastWs().open();
  env.lastWs().receive(welcome(1));
  assert.deepEqual(JSON.parse(storage.getItem(KEY)), { device: "tab-42", epoch: "E5", seq: 99 });
});

test("persist: corrupt or throwing storage does not break the client", async () => {
  const bad = { getItem: () => "{not json", setItem: () => { throw new Error("QuotaExceeded"); }, removeItem() {} };
  const env = setup({ persist: true, storage: bad });
  env.client.connect();
  await settle();
  env.lastWs().open();
  env.lastWs().receive(welcome(1));
  env.lastWs().receive(ev(2));
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 2 });
  assert.equal(env.client.state, "open");
});

test("persist: an explicit device option wins over the stored one, position is still restored", async () => {
  const storage = new MemoryStorage({ [KEY]: JSON.stringify({ device: "tab-42", epoch: "E5", seq: 7 }) });
  const env = setup({ persist: true, storage, device: "mine" });
  assert.equal(env.client.device, "mine");
  assert.deepEqual(env.client.position, { epoch: "E5", seq: 7 });
  assert.equal(JSON.parse(storage.getItem(KEY)).device, "mine");
});
