// `batch` messages (the client connects with batch=1): the event frames inside are handled one by
// one, in order, exactly as if each had come alone; nothing else is ever taken from a batch.

import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, ev, bev, openWs, recordEvents } from "./fakes.js";

test("the client asks for batches on every connect", async () => {
  const env = setup();
  env.client.connect();
  await openWs(env, 0, { bepoch: "B1", bseq: 0 });
  assert.equal(env.lastWs().params.get("batch"), "1");
});

test("a batch is its frames in order, deduped like single frames", async () => {
  const env = setup();
  const got = recordEvents(env);
  env.client.connect();
  const ws = await openWs(env, 0, { bepoch: "B1", bseq: 0 });
  ws.receive({ type: "batch", frames: [ev(1), bev(1), ev(2), ev(2), { type: "batch", frames: [ev(9)] }, null, ev(3)] });
  ws.receive(ev(3));
  assert.deepEqual(got, ["u1", "b1", "u2", "u3"], "nested batches and non-frames are ignored");
  assert.deepEqual(env.client.position, { epoch: "E1", seq: 3 });
});
