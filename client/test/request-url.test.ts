/** `url` is a path below baseURL: anything else could send the skey to another host, so it is refused. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { clientOn, demoServer } from "./helpers/fixtures";

const server = demoServer();

for (const url of ["@evil.example/x", "//evil.example/x", ".evil.example/x", ":8080/x", "me", "", "https://evil.example/x"]) {
  test(`request and uploadFile refuse url ${JSON.stringify(url)} with a TypeError, sending nothing`, () => {
    const { api, platform } = clientOn(server());
    platform.storage.set("wxlogin.skey", "a-stored-skey");

    assert.throws(() => api.request({ url }), TypeError);
    assert.throws(() => api.uploadFile({ url, filePath: "/tmp/x.png", name: "file" }), TypeError);
    assert.equal(platform.sent.length, 0);
    assert.equal(platform.codes.length, 0);
  });
}

test("a path with a query goes to baseURL + path", async () => {
  const { api, platform } = clientOn(server());

  const res = await api.request({ url: "/me?page=1" });

  assert.equal(res.statusCode, 200);
  assert.equal(platform.sent[1].url, server().url + "/me?page=1");
});
