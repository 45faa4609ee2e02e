/** One failed login, shared: every waiter gets its error, and the next call starts afresh. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { WxLoginError } from "../dist/index";
import { clientOn, demoServer } from "./helpers/fixtures";

const server = demoServer();

test("a login failure shared by 6 waiters: 1 login POST, 6 rejections with its error, then a fresh login", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxConcurrent: 2 });
  platform.scriptedCodes.push("demo-fail-40226-blocked");
  const before = await server().count("POST /auth/login");

  const outcomes = await Promise.allSettled(Array.from({ length: 6 }, () => api.request({ url: "/me" })));

  const errors = outcomes.map((o) => (o.status === "rejected" ? o.reason : null));
  assert.ok(errors.every((e) => e instanceof WxLoginError && e.status === 403 && e.error === "user_blocked"));
  assert.equal(platform.codes.length, 1);
  assert.equal(await server().count("POST /auth/login") - before, 1);
  assert.equal(platform.sentTo("/me"), 0);

  const res = await api.request({ url: "/me" });

  assert.equal(res.statusCode, 200);
  assert.equal(platform.codes.length, 2, "the failure is not cached: the next call logs in");
});
