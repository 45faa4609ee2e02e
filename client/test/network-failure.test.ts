/** The platform's fail callback: status 0, "network_error", the platform's errMsg. */
import { strict as assert } from "node:assert";
import { createServer } from "node:net";
import { once } from "node:events";
import { test } from "node:test";
import { createClient, WxLoginError } from "../dist/index";
import { createFakePlatform } from "./helpers/platform";
import { clientOn, demoServer } from "./helpers/fixtures";

const server = demoServer();

async function closedPort(): Promise<number> {
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address() as { port: number };
  probe.close();
  await once(probe, "close");
  return port;
}

test("a network failure while logging in rejects with status 0 network_error and the platform's errMsg", async () => {
  const platform = createFakePlatform();
  const api = createClient({ baseURL: `http://127.0.0.1:${await closedPort()}`, platform });

  const error = await api.request({ url: "/me" }).then(() => null, (e: unknown) => e);

  assert.ok(error instanceof WxLoginError);
  assert.equal(error.status, 0);
  assert.equal(error.error, "network_error");
  assert.match(error.message, /^request:fail /);
  assert.equal(error.retryAfter, null);
  assert.equal(platform.codes.length, 1);
  assert.equal(api.skey, null);
});

test("a network failure on a request keeps the skey: the session is still good", async () => {
  const { api, platform } = clientOn(server());
  const skey = await api.login();
  const offline = createClient({ baseURL: `http://127.0.0.1:${await closedPort()}`, platform });

  const error = await offline.request({ url: "/me" }).then(() => null, (e: unknown) => e);

  assert.ok(error instanceof WxLoginError);
  assert.equal(error.error, "network_error");
  assert.equal(api.skey, skey);
  assert.equal((await api.request({ url: "/me" })).statusCode, 200);
});

test("wx.login failing rejects with its errMsg", async () => {
  const { api, platform } = clientOn(server());
  platform.login = (options) => { setTimeout(() => options.fail({ errMsg: "login:fail no network" }), 0); return undefined; };

  const error = await api.login().then(() => null, (e: unknown) => e);

  assert.ok(error instanceof WxLoginError);
  assert.equal(error.status, 0);
  assert.equal(error.message, "login:fail no network");
  assert.equal(platform.sent.length, 0);
});
