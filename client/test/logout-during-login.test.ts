/** logout() while a login runs: the session that login makes is ended on the server and never stored. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { clientOn, demoServer, holdNext, issuedSkeys, rejection, statusWith } from "./helpers/fixtures";

const server = demoServer();

test("logout during the first login: the request rejects logged_out, and the new session is ended, not stored", async () => {
  const { api, platform } = clientOn(server());
  const login = holdNext(platform, "/auth/login", "send");
  const request = rejection(api.request({ url: "/me" }));
  await login.reached;

  await api.logout();
  login.release();
  const error = await request;

  assert.equal(error.status, 0);
  assert.equal(error.error, "logged_out");
  assert.equal(api.skey, null, "no live session on the device after logout");
  const [made] = issuedSkeys(platform);
  assert.ok(made, "the server did make a session");
  assert.equal(await statusWith(server(), made), 401, "... and the client ended it");
  const ending = platform.sent.filter((r) => r.url.endsWith("/auth/logout"));
  assert.deepEqual(ending.map((r) => r.header["X-WX-Skey"]), [made]);
  assert.equal(platform.sentTo("/me"), 0, "nothing sent for a request from before the logout");
});

test("logout during a re-login: login() rejects logged_out; neither the old nor the new session lives on", async () => {
  const { api, platform } = clientOn(server());
  const old = await api.login();
  const login = holdNext(platform, "/auth/login", "send");
  const relogin = rejection(api.login());
  await login.reached;

  await api.logout();
  login.release();
  const error = await relogin;

  assert.equal(error.error, "logged_out");
  assert.equal(api.skey, null);
  const made = issuedSkeys(platform)[1];
  assert.ok(made);
  assert.equal(await statusWith(server(), old), 401);
  assert.equal(await statusWith(server(), made), 401);
});

test("after a logout cut a login short, the next call logs in afresh", async () => {
  const { api, platform } = clientOn(server());
  const login = holdNext(platform, "/auth/login", "send");
  const first = rejection(api.login());
  await login.reached;
  await api.logout();
  login.release();
  await first;

  const res = await api.request({ url: "/me" });

  assert.equal(res.statusCode, 200);
  assert.equal(platform.codes.length, 2);
  assert.equal(await statusWith(server(), api.skey!), 200);
});
