/** 400 session_key_stale for an skey a login has already replaced: that login's fresh session is the answer. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { clientOn, demoServer, holdNext, rejection, statusWith } from "./helpers/fixtures";

const server = demoServer();
const JUNK = { encryptedData: Buffer.alloc(32, 7).toString("base64"), iv: Buffer.alloc(16, 1).toString("base64") };

test("session_key_stale after a rotation: no second re-login, and the current session stays", async () => {
  const { api, platform } = clientOn(server());
  const first = await api.login();
  const decrypt = holdNext(platform, "/open-data", "answer");
  const request = rejection(api.request({ url: "/open-data", method: "POST", data: JUNK }));
  await decrypt.reached;
  const rotated = await api.login();

  decrypt.release();
  const error = await request;

  assert.equal(error.error, "session_key_stale");
  assert.equal(platform.codes.length, 2, "the rotation's login already gave a fresh session_key");
  assert.equal(api.skey, rotated);
  assert.equal(await statusWith(server(), rotated), 200, "the current session is not ended (orphaned)");
  assert.equal(await statusWith(server(), first), 401);
});
