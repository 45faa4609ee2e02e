/** A request with no skey logs in first; concurrent ones share one login. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { clientOn, demoServer, statusWith } from "./helpers/fixtures";

const server = demoServer();

test("the first request logs in, then carries the skey", async () => {
  const { api, platform } = clientOn(server());
  assert.equal(api.skey, null);

  const res = await api.request<{ data: { openid: string } }>({ url: "/me" });

  assert.equal(res.statusCode, 200);
  assert.match(res.data.data.openid, /^demo-/);
  assert.equal(platform.codes.length, 1);
  assert.equal(platform.sentTo("/auth/login", "POST"), 1);
  assert.notEqual(api.skey, null);
  assert.equal(platform.storage.get("wxlogin.skey"), api.skey);
  const me = platform.sent.find((r) => r.url.endsWith("/me"))!;
  assert.equal(me.header["X-WX-Skey"], api.skey);
});

test("20 concurrent requests while logged out make exactly 1 wx.login and 1 login POST", async () => {
  const { api, platform } = clientOn(server());
  const [loginsBefore, meBefore] = [await server().count("POST /auth/login"), await server().count("GET /me")];

  const answers = await Promise.all(Array.from({ length: 20 }, () => api.request({ url: "/me" })));

  assert.deepEqual(answers.map((a) => a.statusCode), Array(20).fill(200));
  assert.equal(platform.codes.length, 1, "wx.login calls");
  assert.equal(platform.sentTo("/auth/login"), 1, "login POSTs sent by the platform");
  assert.equal(await server().count("POST /auth/login") - loginsBefore, 1, "login POSTs the server logged");
  assert.equal(await server().count("GET /me") - meBefore, 20);
  const skeys = new Set(platform.sent.filter((r) => r.url.endsWith("/me")).map((r) => r.header["X-WX-Skey"]));
  assert.deepEqual([...skeys], [api.skey]);
});

test("login() shares one login between concurrent callers and resolves with the stored skey", async () => {
  const { api, platform } = clientOn(server());

  const skeys = await Promise.all([api.login(), api.login(), api.login()]);

  assert.equal(new Set(skeys).size, 1);
  assert.equal(skeys[0], api.skey);
  assert.equal(platform.codes.length, 1);
});

test("a re-login sends the old skey, so the server ends that session", async () => {
  const { api, platform } = clientOn(server());
  const first = await api.login();

  const second = await api.login();

  assert.notEqual(second, first);
  const logins = platform.sent.filter((r) => r.url.endsWith("/auth/login"));
  assert.equal(logins[0].header["X-WX-Skey"], undefined);
  assert.equal(logins[1].header["X-WX-Skey"], first);
  assert.equal(await statusWith(server(), first), 401);
  assert.equal(await statusWith(server(), second), 200);
});

test("a request made while a re-login runs waits for it and carries the new skey", async () => {
  const { api, platform } = clientOn(server());
  const old = await api.login();

  const [fresh, res] = await Promise.all([api.login(), api.request({ url: "/me" })]);

  assert.notEqual(fresh, old);
  assert.equal(res.statusCode, 200);
  assert.equal(platform.sentTo("/me"), 1, "no 401 for the old skey, so no retry");
  assert.equal(platform.sent.find((r) => r.url.endsWith("/me"))!.header["X-WX-Skey"], fresh);
});

test("logout ends the session on the server and forgets the skey", async () => {
  const { api, platform } = clientOn(server());
  const skey = await api.login();

  await api.logout();

  assert.equal(api.skey, null);
  assert.equal(platform.storage.has("wxlogin.skey"), false);
  assert.equal(await statusWith(server(), skey), 401);
  await api.logout();
  assert.equal(platform.sentTo("/auth/logout"), 1, "a second logout has nothing to end");
});

test("loginPath, logoutPath and storageKey are the options' values", async () => {
  const { api, platform } = clientOn(server(), "wx", {
    loginPath: "/auth/default/login", logoutPath: "/auth/default/logout", storageKey: "my.skey",
  });

  const skey = await api.login();
  assert.equal(platform.storage.get("my.skey"), skey);
  assert.equal((await api.request({ url: "/me" })).statusCode, 200);
  await api.logout();

  assert.equal(platform.sentTo("/auth/default/login"), 1);
  assert.equal(platform.sentTo("/auth/default/logout"), 1);
  assert.equal(platform.storage.has("my.skey"), false);
  assert.equal(await statusWith(server(), skey), 401);
});
