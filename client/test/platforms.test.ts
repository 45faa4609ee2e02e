/** uni-style and Taro-style platform objects work as wx does. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { WxLoginError, createClient } from "../dist/index";
import { clientOn, demoServer, endSessionOnServer } from "./helpers/fixtures";
import { createFakePlatform, type Style } from "./helpers/platform";

const server = demoServer();

for (const style of ["uni", "taro"] as Style[]) {
  test(`a ${style}-style platform: logs in once for concurrent requests, and again after a 401`, async () => {
    const { api, platform } = clientOn(server(), style);

    const first = await Promise.all(Array.from({ length: 5 }, () => api.request({ url: "/me" })));
    await endSessionOnServer(server(), api.skey!);
    const after = await api.request({ url: "/me" });

    assert.deepEqual(first.map((a) => a.statusCode), Array(5).fill(200));
    assert.equal(after.statusCode, 200);
    assert.equal(platform.codes.length, 2);
  });

  test(`a ${style}-style platform: a network failure is one WxLoginError and nothing unhandled`, async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown): void => { unhandled.push(reason); };
    process.on("unhandledRejection", record);
    try {
      const api = createClient({ baseURL: "http://127.0.0.1:9", platform: createFakePlatform(style) });

      const error = await api.request({ url: "/me" }).then(() => null, (e: unknown) => e);
      await new Promise((wake) => setTimeout(wake, 50));

      assert.ok(error instanceof WxLoginError);
      assert.equal(error.error, "network_error");
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", record);
    }
  });
}
