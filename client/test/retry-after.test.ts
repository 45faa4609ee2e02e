/** 429/502/503/504: GET/HEAD and the login wait once for Retry-After up to maxRetryAfter; the rest reject with retryAfter. */
import { strict as assert } from "node:assert";
import { after, test } from "node:test";
import { createClient } from "../dist/index";
import { clientOn, demoServer, rejection } from "./helpers/fixtures";
import { startGateway, type Gateway } from "./helpers/gateway";
import { createFakePlatform } from "./helpers/platform";

const server = demoServer();
let gateway: Gateway | null = null;
after(async () => { await gateway?.stop(); });

async function behindGateway(maxRetryAfter?: number) {
  gateway ??= await startGateway(server().url);
  const platform = createFakePlatform();
  return { api: createClient({ baseURL: gateway.url, platform, maxRetryAfter }), platform, gateway };
}

test("503 with Retry-After on login (WeChat busy): waits, then one more login with a fresh code", async () => {
  const { api, platform, gateway } = await behindGateway();
  gateway.refuseNext("POST", "/auth/login", {
    status: 503, retryAfter: "1", contentType: "application/json",
    body: JSON.stringify({ code: "503", error: "wechat_busy", message: "WeChat is busy.", errcode: -1 }),
  });
  const started = Date.now();

  const res = await api.request({ url: "/me" });

  assert.equal(res.statusCode, 200);
  assert.ok(Date.now() - started >= 950, "waited the Retry-After: 1");
  assert.equal(platform.codes.length, 2);
  assert.notEqual(platform.codes[1], platform.codes[0]);
  assert.equal(platform.sentTo("/auth/login"), 2);
});

test("503 on login with a Retry-After over maxRetryAfter rejects at once, carrying retryAfter", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxRetryAfter: 1 });
  platform.scriptedCodes.push("demo-fail--1-busy");

  const error = await rejection(api.login());

  assert.equal(error.status, 503);
  assert.equal(error.error, "wechat_busy");
  assert.equal(error.errcode, -1);
  assert.equal(error.retryAfter, 5);
  assert.equal(platform.codes.length, 1);
});

test("429 on login (WeChat rate limit) rejects with retryAfter 60", async () => {
  const { api, platform } = clientOn(server());
  platform.scriptedCodes.push("demo-fail-45011-limited");

  const error = await rejection(api.login());

  assert.equal(error.status, 429);
  assert.equal(error.error, "wechat_rate_limited");
  assert.equal(error.retryAfter, 60);
  assert.equal(platform.codes.length, 1);
});

test("a GET answered 503 with Retry-After is retried once after the wait", async () => {
  const { api, platform, gateway } = await behindGateway();
  await api.login();
  gateway.refuseNext("GET", "/me", { status: 503, retryAfter: "1" });
  const started = Date.now();

  const res = await api.request({ url: "/me" });

  assert.equal(res.statusCode, 200);
  assert.ok(Date.now() - started >= 950, "waited the Retry-After: 1");
  assert.equal(platform.sentTo("/me"), 2);
});

test("a GET answered 504 twice rejects after one retry", async () => {
  const { api, platform, gateway } = await behindGateway();
  await api.login();
  gateway.refuseNext("GET", "/me", { status: 504, retryAfter: "0" }, 2);

  const error = await rejection(api.request({ url: "/me" }));

  assert.equal(error.status, 504);
  assert.equal(error.error, "http_error", "a gateway's HTML page is no JSON error");
  assert.equal(error.retryAfter, 0);
  assert.equal(platform.sentTo("/me"), 2);
});

test("a POST answered 503 is not retried: it rejects with retryAfter", async () => {
  const { api, platform, gateway } = await behindGateway();
  await api.login();
  gateway.refuseNext("POST", "/phone", {
    status: 503, retryAfter: "0", contentType: "application/json",
    body: JSON.stringify({ code: "503", error: "session_store_unavailable", message: "Try again shortly." }),
  });

  const error = await rejection(api.request({ url: "/phone", method: "POST", data: { code: "p1" } }));

  assert.equal(error.error, "session_store_unavailable");
  assert.equal(error.message, "Try again shortly.");
  assert.equal(error.retryAfter, 0);
  assert.equal(platform.sentTo("/phone"), 1);
});

test("a 502 without Retry-After rejects at once with retryAfter null", async () => {
  const { api, platform, gateway } = await behindGateway();
  await api.login();
  gateway.refuseNext("GET", "/me", { status: 502 });

  const error = await rejection(api.request({ url: "/me" }));

  assert.equal(error.status, 502);
  assert.equal(error.retryAfter, null);
  assert.equal(platform.sentTo("/me"), 1);
});

test("Retry-After as an HTTP date is read as seconds from now", async () => {
  const { api, gateway } = await behindGateway(0);
  await api.login();
  gateway.refuseNext("GET", "/me", { status: 429, retryAfter: new Date(Date.now() + 120_000).toUTCString() });

  const error = await rejection(api.request({ url: "/me" }));

  assert.ok(error.retryAfter! >= 118 && error.retryAfter! <= 121, String(error.retryAfter));
});
