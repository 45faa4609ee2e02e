/** Retry-After is whole seconds or an HTTP date (ending "GMT"); anything else is no Retry-After at all. */
import { strict as assert } from "node:assert";
import { after, test } from "node:test";
import { createClient } from "../dist/index";
import { demoServer, rejection } from "./helpers/fixtures";
import { startGateway, type Gateway } from "./helpers/gateway";
import { createFakePlatform } from "./helpers/platform";

const server = demoServer();
let gateway: Gateway | null = null;
after(async () => { await gateway?.stop(); });

async function refusedOnce(retryAfter: string) {
  gateway ??= await startGateway(server().url);
  const platform = createFakePlatform();
  const api = createClient({ baseURL: gateway.url, platform, maxRetryAfter: 1 });
  await api.login();
  gateway.refuseNext("GET", "/me", { status: 503, retryAfter });
  return { error: await rejection(api.request({ url: "/me" })), platform };
}

for (const value of ["1.5", "-1", "+1", "1e0", "2 s", "soon", "Thu, 01 Jan 1970 00:00:00 +0800", "2"]) {
  const seconds = value === "2" ? 2 : null;
  test(`Retry-After ${JSON.stringify(value)} reads as ${seconds}${seconds === null ? ": no wait, no retry" : ""}`, async () => {
    const { error, platform } = await refusedOnce(value);

    assert.equal(error.status, 503);
    assert.equal(error.retryAfter, seconds);
    assert.equal(platform.sentTo("/me"), 1, "unreadable, or over maxRetryAfter (1): not retried");
  });
}
