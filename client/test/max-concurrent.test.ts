/** maxConcurrent: never more than N platform requests in flight; the rest wait and complete. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { clientOn, demoServer } from "./helpers/fixtures";

const server = demoServer();

test("maxConcurrent 3: 12 requests never have more than 3 in flight, and all complete", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxConcurrent: 3 });
  await api.login();

  const answers = await Promise.all(Array.from({ length: 12 }, () => api.request({ url: "/me" })));

  assert.deepEqual(answers.map((a) => a.statusCode), Array(12).fill(200));
  assert.equal(platform.maxInFlight, 3);
});

test("the default is wx.request's own limit, 10, and the login POST queues with the rest", async () => {
  const { api, platform } = clientOn(server());

  const answers = await Promise.all(Array.from({ length: 25 }, () => api.request({ url: "/me" })));

  assert.equal(answers.filter((a) => a.statusCode === 200).length, 25);
  assert.equal(platform.maxInFlight, 10);
  assert.equal(platform.codes.length, 1);
});

test("maxConcurrent 1 still completes a re-login inside a request", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxConcurrent: 1 });
  platform.storage.set("wxlogin.skey", "forged");

  const answers = await Promise.all([api.request({ url: "/me" }), api.request({ url: "/me" })]);

  assert.deepEqual(answers.map((a) => a.statusCode), [200, 200]);
  assert.equal(platform.maxInFlight, 1);
  assert.equal(platform.codes.length, 1);
});

test("maxConcurrent below 1 is refused", () => {
  assert.throws(() => clientOn(server(), "wx", { maxConcurrent: 0 }), TypeError);
});
