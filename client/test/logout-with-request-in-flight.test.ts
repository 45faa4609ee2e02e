/** logout() while requests are out or queued: none of them logs in again afterwards. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { clientOn, demoServer, endSessionOnServer, holdNext, rejection } from "./helpers/fixtures";

const server = demoServer();

test("a request in flight when logout runs: its 401 rejects, with no new login", async () => {
  const { api, platform } = clientOn(server());
  const skey = await api.login();
  const feed = holdNext(platform, "/me", "send");
  const request = rejection(api.request({ url: "/me" }));
  await feed.reached;

  await api.logout();
  feed.release();
  const error = await request;

  assert.equal(error.status, 401);
  assert.equal(error.error, "session_expired");
  assert.equal(platform.codes.length, 1, "no wx.login after the logout");
  assert.equal(platform.sentTo("/auth/login"), 1);
  assert.equal(api.skey, null);
  assert.equal(platform.sent.find((r) => r.url.endsWith("/me"))!.header["X-WX-Skey"], skey);
});

test("a 401 that comes while the logout POST is still out: rejects, with no new login", async () => {
  const { api, platform } = clientOn(server());
  const skey = await api.login();
  const feed = holdNext(platform, "/me", "send");
  const ending = holdNext(platform, "/auth/logout", "send");
  const request = rejection(api.request({ url: "/me" }));
  await feed.reached;
  await endSessionOnServer(server(), skey);   // the session is gone, so /me answers 401
  const logout = api.logout();
  await ending.reached;

  feed.release();
  const error = await request;
  ending.release();
  await logout;

  assert.equal(error.error, "session_expired");
  assert.equal(platform.codes.length, 1, "no wx.login after the logout began");
  assert.equal(api.skey, null);
});

test("a request queued when logout runs is not sent: it rejects logged_out", async () => {
  const { api, platform } = clientOn(server(), "wx", { maxConcurrent: 1 });
  await api.login();
  const first = holdNext(platform, "/me", "send");
  const running = api.request({ url: "/me" });
  const queued = rejection(api.request({ url: "/me", data: { queued: "yes" } }));
  await first.reached;

  const logout = api.logout();
  first.release();
  await running;
  await logout;
  const error = await queued;

  assert.equal(error.error, "logged_out");
  assert.equal(platform.sentTo("/me"), 1);
  assert.equal(platform.codes.length, 1);
  assert.equal(api.skey, null);
});
