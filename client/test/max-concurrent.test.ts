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

test("the default is wx.request's own limit, 10, and the login POST counts against it, going first", async () => {
  const { api, platform } = clientOn(server());

  const answers = await Promise.all(Array.from({ length: 25 }, () => api.request({ url: "/me" })));

  assert.equal(answers.filter((a) => a.statusCode === 200).length, 25);
  assert.equal(platform.maxInFlight, 10);
  assert.equal(platform.codes.length, 1);
  assert.equal(new URL(platform.sent[0].url).pathname, "/auth/login", "the login goes out before any request");
});

test("maxConcurrent 2 with both slots busy: the login POST queues, and goes ahead of the requests waiting", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxConcurrent: 2 });
  await api.login();
  const held: Array<() => void> = [];
  platform.beforeSend = (request) => new Promise<void>((release) => {
    if (request.url.endsWith("/me") && held.length < 2) held.push(release); else release();
  });
  const busy = [api.request({ url: "/me" }), api.request({ url: "/me" })];
  while (held.length < 2) await new Promise((tick) => setTimeout(tick, 5));
  const waiting = api.request({ url: "/me" });
  const relogin = api.login();
  await new Promise((tick) => setTimeout(tick, 50));
  const sentWhileBusy = platform.sent.length;

  held.forEach((release) => release());
  await Promise.all([...busy, waiting, relogin]);

  assert.equal(sentWhileBusy, 3, "the login POST waited for a slot");
  assert.equal(platform.maxInFlight, 2);
  const order = platform.sent.slice(3).map((r) => new URL(r.url).pathname);
  assert.deepEqual(order, ["/auth/login", "/me"], "the login took the first free slot");
  assert.equal(platform.sent[4].header["X-WX-Skey"], api.skey, "the waiting request carries the new skey");
});

test("maxConcurrent 1 still completes a re-login inside a request", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxConcurrent: 1 });
  platform.storage.set("wxlogin.skey", "forged");

  const answers = await Promise.all([api.request({ url: "/me" }), api.request({ url: "/me" })]);

  assert.deepEqual(answers.map((a) => a.statusCode), [200, 200]);
  assert.equal(platform.maxInFlight, 1);
  assert.equal(platform.codes.length, 1);
});

