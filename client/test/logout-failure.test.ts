/**
 * logout() forgets the skey only once the server has ended the session (2xx, or 401: already gone).
 * A 429/502/503/504 is retried once by the Retry-After rules; a failure keeps the skey and rejects,
 * so calling logout() again can still end the session: nothing is left orphaned on the server.
 */
import { strict as assert } from "node:assert";
import { after, test } from "node:test";
import { createClient } from "../dist/index";
import { demoServer, endSessionOnServer, rejection, statusWith } from "./helpers/fixtures";
import { startGateway, type Gateway } from "./helpers/gateway";
import { createFakePlatform } from "./helpers/platform";

const server = demoServer();
let gateway: Gateway | null = null;
after(async () => { await gateway?.stop(); });

async function behindGateway() {
  gateway ??= await startGateway(server().url);
  const platform = createFakePlatform();
  return { api: createClient({ baseURL: gateway.url, platform, maxRetryAfter: 1 }), platform, gateway };
}

test("a logout POST that fails (503, no Retry-After) keeps the skey and rejects; logout() again ends the session", async () => {
  const { api, platform, gateway } = await behindGateway();
  const skey = await api.login();
  gateway.refuseNext("POST", "/auth/logout", { status: 503 });

  const error = await rejection(api.logout());

  assert.equal(error.status, 503);
  assert.equal(api.skey, skey, "kept: the session still lives on the server");
  assert.equal(await statusWith(server(), skey), 200);
  await api.logout();
  assert.equal(api.skey, null);
  assert.equal(await statusWith(server(), skey), 401);
  assert.equal(platform.sentTo("/auth/logout"), 2);
});

test("a logout POST that meets a network failure keeps the skey and rejects network_error", async () => {
  const { api, platform } = await behindGateway();
  const skey = await api.login();
  const real = platform.request.bind(platform);
  platform.request = (options) => {
    if (options.url.endsWith("/auth/logout")) { setTimeout(() => options.fail({ errMsg: "request:fail offline" }), 0); return undefined; }
    return real(options);
  };

  const error = await rejection(api.logout());

  assert.equal(error.error, "network_error");
  assert.equal(api.skey, skey);
});

test("a logout POST answered 503 with Retry-After 0 is retried once, then the skey goes", async () => {
  const { api, platform, gateway } = await behindGateway();
  const skey = await api.login();
  gateway.refuseNext("POST", "/auth/logout", { status: 503, retryAfter: "0" });

  await api.logout();

  assert.equal(platform.sentTo("/auth/logout"), 2);
  assert.equal(api.skey, null);
  assert.equal(await statusWith(server(), skey), 401);
});

test("a logout answered 401 (the session was already gone) forgets the skey", async () => {
  const { api } = await behindGateway();
  const skey = await api.login();
  await endSessionOnServer(server(), skey);

  await api.logout();

  assert.equal(api.skey, null);
});
