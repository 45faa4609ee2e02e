/** Requests queued behind maxConcurrent read the skey when their turn comes, and the re-login jumps the queue. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { clientOn, demoServer, endSessionOnServer } from "./helpers/fixtures";

const server = demoServer();

test("dead skey, 25 GETs at maxConcurrent 10: the login POST goes out before the queued GETs, none of which carries the dead skey", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxConcurrent: 10 });
  const dead = await api.login();
  await endSessionOnServer(server(), dead);
  const start = platform.sent.length;

  const answers = await Promise.all(Array.from({ length: 25 }, () => api.request({ url: "/me" })));

  assert.deepEqual(answers.map((a) => a.statusCode), Array(25).fill(200));
  const sent = platform.sent.slice(start).map((r) => `${r.method} ${new URL(r.url).pathname} ${r.header["X-WX-Skey"] === dead ? "dead" : "fresh"}`);
  assert.deepEqual(sent.slice(0, 10), Array(10).fill("GET /me dead"), "the first 10 go out at once");
  assert.equal(sent[10], "POST /auth/login dead", "the re-login (naming the dead skey) is next");
  assert.deepEqual(sent.slice(11), Array(25).fill("GET /me fresh"), "then the 15 queued and the 10 retries, all fresh");
  assert.equal(platform.codes.length, 2);
  assert.ok(platform.maxInFlight <= 10);
});
