/** A 401 only re-logs in when the skey it names is still the stored one. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { clientOn, demoServer, endSessionOnServer, holdNext } from "./helpers/fixtures";

const server = demoServer();

test("a 401 for an skey a login already replaced: retried with the new skey, no new login", async () => {
  const { api, platform } = clientOn(server());
  const old = await api.login();
  const slow = holdNext(platform, "/me", "send");
  const request = api.request({ url: "/me" });
  await slow.reached;
  const fresh = await api.login();           // ends `old` on the server

  slow.release();
  const res = await request;

  assert.equal(res.statusCode, 200);
  assert.equal(platform.codes.length, 2, "the first login and the one re-login only");
  const sent = platform.sent.filter((r) => r.url.endsWith("/me")).map((r) => r.header["X-WX-Skey"]);
  assert.deepEqual(sent, [old, fresh]);
  assert.equal(api.skey, fresh);
});

test("401s for two skeys in turn: each current one gets one re-login, each request one retry", async () => {
  const { api, platform } = clientOn(server());
  const first = await api.login();
  await endSessionOnServer(server(), first);
  assert.equal((await api.request({ url: "/me" })).statusCode, 200);
  const second = api.skey!;
  await endSessionOnServer(server(), second);

  const res = await api.request({ url: "/me" });

  assert.equal(res.statusCode, 200);
  assert.equal(platform.codes.length, 3);
  const relogins = platform.sent.filter((r) => r.url.endsWith("/auth/login")).map((r) => r.header["X-WX-Skey"]);
  assert.deepEqual(relogins, [undefined, first, second]);
});
