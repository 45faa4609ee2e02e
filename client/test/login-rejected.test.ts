/** A login the server refuses: a fresh code for code_invalid/code_used, once; other errors reject. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { clientOn, demoServer, endSessionOnServer, postedCodes, rejection } from "./helpers/fixtures";

const server = demoServer();

test("code_used: one more wx.login with a fresh code", async () => {
  const { api, platform } = clientOn(server());
  await api.login();
  await endSessionOnServer(server(), api.skey!);
  platform.scriptedCodes.push(platform.codes[0]); // the platform hands out a code WeChat has seen
  const answers: string[] = [];
  platform.beforeAnswer = async (request, response) => {
    if (request.url.endsWith("/auth/login")) answers.push(`${response.statusCode} ${(response.data as { error?: string }).error}`);
  };

  const res = await api.request({ url: "/me" });

  assert.equal(res.statusCode, 200);
  assert.deepEqual(answers, ["401 code_used", "200 undefined"], "the server refused the reused code");
  const codes = postedCodes(platform);
  assert.equal(codes.length, 3);
  assert.equal(codes[1], codes[0], "the reused code was refused ...");
  assert.notEqual(codes[2], codes[0], "... and a fresh one logged in");
});

test("code_invalid: one more wx.login with a fresh code", async () => {
  const { api, platform } = clientOn(server());
  platform.scriptedCodes.push("demo-fail-40029-expired");

  const skey = await api.login();

  assert.equal(platform.codes.length, 2);
  assert.deepEqual(postedCodes(platform), platform.codes, "no code is posted twice");
  assert.equal(api.skey, skey);
});

test("a second code_invalid rejects: one fresh code, never a loop", async () => {
  const { api, platform } = clientOn(server());
  platform.scriptedCodes.push("demo-fail-40029-a", "demo-fail-40163-b", "demo-fail-40029-c");

  const error = await rejection(api.request({ url: "/me" }));

  assert.equal(error.status, 401);
  assert.equal(error.error, "code_used");
  assert.equal(error.errcode, 40163);
  assert.equal(platform.codes.length, 2);
  assert.equal(platform.sentTo("/me"), 0, "no request without a session");
  assert.equal(api.skey, null);
});

test("other login errors reject at once, with the server's error", async () => {
  const { api, platform } = clientOn(server());
  platform.scriptedCodes.push("demo-fail-40226-risky");

  const error = await rejection(api.login());

  assert.equal(error.status, 403);
  assert.equal(error.error, "user_blocked");
  assert.equal(error.errcode, 40226);
  assert.equal(error.retryAfter, null);
  assert.ok(error.message.length > 0);
  assert.equal(platform.codes.length, 1);
});

test("a bad code shape (400) rejects at once", async () => {
  const { api, platform } = clientOn(server());
  platform.scriptedCodes.push("not a code!");

  const error = await rejection(api.login());

  assert.equal(error.status, 400);
  assert.equal(error.error, "code_malformed");
  assert.equal(platform.codes.length, 1);
});

test("session_key_stale: the client logs in again (ending the old session), then rejects", async () => {
  const { api, platform } = clientOn(server());
  const old = await api.login();
  const junk = { encryptedData: Buffer.alloc(32, 7).toString("base64"), iv: Buffer.alloc(16, 1).toString("base64") };

  const error = await rejection(api.request({ url: "/open-data", method: "POST", data: junk }));

  assert.equal(error.status, 400);
  assert.equal(error.error, "session_key_stale");
  assert.equal(platform.codes.length, 2, "a new login, so the next encryptedData uses a fresh session_key");
  assert.equal(platform.sentTo("/open-data"), 1, "not retried: the app must fetch fresh encryptedData");
  assert.notEqual(api.skey, old);
  const relogin = platform.sent.filter((r) => r.url.endsWith("/auth/login"))[1];
  assert.equal(relogin.header["X-WX-Skey"], old);
  assert.equal((await api.request({ url: "/me" })).statusCode, 200);
});
