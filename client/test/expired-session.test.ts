/** A 401 for the skey: clear it, log in once (shared), retry once; a second 401 rejects. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { WxLoginError } from "../dist/index";
import { clientOn, demoServer, endSessionOnServer, statusWith } from "./helpers/fixtures";

const server = demoServer();

function assertNoSkeyIn(error: unknown, skeys: Array<string | null>): void {
  const text = [String(error), (error as Error).message, JSON.stringify(error), (error as Error).stack].join("\n");
  for (const skey of skeys) if (skey) assert.ok(!text.includes(skey), "an skey in the error");
}

test("a server-side logout: 401, one re-login, and the retry succeeds", async () => {
  const { api, platform } = clientOn(server());
  const old = await api.login();
  await endSessionOnServer(server(), old);

  const res = await api.request<{ data: { openid: string } }>({ url: "/me" });

  assert.equal(res.statusCode, 200);
  assert.equal(platform.codes.length, 2);
  assert.equal(platform.sentTo("/me"), 2);
  assert.notEqual(api.skey, old);
  assert.equal(await statusWith(server(), api.skey!), 200);
  const relogin = platform.sent.filter((r) => r.url.endsWith("/auth/login"))[1];
  assert.equal(relogin.header["X-WX-Skey"], old, "the re-login names the old skey");
});

test("a forged stored skey: 401 skey_invalid, one re-login, and the retry succeeds", async () => {
  const { api, platform } = clientOn(server());
  platform.storage.set("wxlogin.skey", "forged.c2tleQ.bm90LWEtc2lnbmF0dXJl");

  const res = await api.request({ url: "/me" });

  assert.equal(res.statusCode, 200);
  assert.equal(platform.codes.length, 1);
  assert.equal(platform.sentTo("/me"), 2);
  assert.notEqual(api.skey, "forged.c2tleQ.bm90LWEtc2lnbmF0dXJl");
});

test("two 401s in a row reject with the server's error, without a loop", async () => {
  const { api, platform } = clientOn(server());
  const old = await api.login();
  await endSessionOnServer(server(), old);
  const issued: string[] = [];
  // Every new session ends before the client sees it, as a logout_all racing the login would.
  platform.beforeAnswer = async (request, response) => {
    const skey = (response.data as { data?: { skey?: string } }).data?.skey;
    if (request.url.endsWith("/auth/login") && skey) {
      issued.push(skey);
      await endSessionOnServer(server(), skey);
    }
  };

  const error = await api.request({ url: "/me" }).then(() => null, (e: unknown) => e);

  assert.ok(error instanceof WxLoginError);
  assert.equal(error.status, 401);
  assert.equal(error.error, "session_expired");
  assert.equal(error.errcode, null);
  assert.equal(platform.codes.length, 2, "one re-login only");
  assert.equal(platform.sentTo("/me"), 2, "one retry only");
  assertNoSkeyIn(error, [old, ...issued]);
});

test("a header the server does not read: 401 skey_missing twice, then the error", async () => {
  const { api, platform } = clientOn(server(), "wx", { header: "X-Not-Read" });

  const error = await api.request({ url: "/me" }).then(() => null, (e: unknown) => e);

  assert.ok(error instanceof WxLoginError);
  assert.equal(error.error, "skey_missing");
  assert.equal(platform.sentTo("/auth/login"), 2);
  assert.ok(platform.sent.filter((r) => r.url.endsWith("/me")).every((r) => typeof r.header["X-Not-Read"] === "string"));
});

test("concurrent requests that all get a 401 for one skey share one re-login", async () => {
  const { api, platform } = clientOn(server());
  const old = await api.login();
  await endSessionOnServer(server(), old);
  const before = await server().count("POST /auth/login");

  const answers = await Promise.all(Array.from({ length: 10 }, () => api.request({ url: "/me" })));

  assert.deepEqual(answers.map((a) => a.statusCode), Array(10).fill(200));
  assert.equal(platform.codes.length, 2, "the first login and one re-login");
  assert.equal(await server().count("POST /auth/login") - before, 1);
});

test("a 4xx the client does not handle resolves, status and body as the server sent them", async () => {
  const { api } = clientOn(server());

  const res = await api.request<{ error: string }>({ url: "/auth/login", method: "POST", data: { code: "demo-fail-40226-x" } });

  assert.equal(res.statusCode, 403);
  assert.equal(res.data.error, "user_blocked");
});
