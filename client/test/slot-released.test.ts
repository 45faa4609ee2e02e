/** A platform call that throws or fails rejects with a WxLoginError and gives its maxConcurrent slot back. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import type { PlatformRequestOptions } from "../dist/index";
import { clientOn, demoServer, rejection } from "./helpers/fixtures";

const server = demoServer();

test("wx.request throwing (as uni's and Taro's parameter checks do): network_error, and the slot is free at maxConcurrent 1", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxConcurrent: 1 });
  const skey = await api.login();
  const real = platform.request.bind(platform);
  let throws = 2;
  platform.request = (options: PlatformRequestOptions): unknown => {
    if (throws-- > 0) throw new TypeError(`request:fail parameter error: header.X-WX-Skey ${options.header["X-WX-Skey"]}`);
    return real(options);
  };

  const first = await rejection(api.request({ url: "/me" }));
  const second = await rejection(api.request({ url: "/me" }));
  const third = await api.request({ url: "/me" });

  for (const error of [first, second]) {
    assert.equal(error.status, 0);
    assert.equal(error.error, "network_error");
    assert.match(error.message, /^request:fail parameter error/);
    assert.ok(!error.message.includes(skey), "the skey is not in the message");
  }
  assert.equal(third.statusCode, 200);
  assert.equal(api.skey, skey, "a failed send is no reason to drop the session");
});

test("wx.request failing (the fail callback): the slot is free at maxConcurrent 1", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxConcurrent: 1 });
  await api.login();
  const real = platform.request.bind(platform);
  let fails = 1;
  platform.request = (options: PlatformRequestOptions): unknown => {
    if (fails-- > 0) { setTimeout(() => options.fail({ errMsg: "request:fail timeout" }), 0); return undefined; }
    return real(options);
  };

  const error = await rejection(api.request({ url: "/me" }));
  const next = await api.request({ url: "/me" });

  assert.equal(error.message, "request:fail timeout");
  assert.equal(next.statusCode, 200);
});

test("wx.login throwing: network_error, and the next call logs in", async () => {
  const { api, platform } = clientOn(server());
  const real = platform.login.bind(platform);
  platform.login = () => { throw new Error("login:fail api unavailable"); };

  const error = await rejection(api.request({ url: "/me" }));
  platform.login = real;
  const res = await api.request({ url: "/me" });

  assert.equal(error.status, 0);
  assert.equal(error.error, "network_error");
  assert.equal(error.message, "login:fail api unavailable");
  assert.equal(res.statusCode, 200);
});
