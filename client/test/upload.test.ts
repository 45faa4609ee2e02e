/** uploadFile goes by the same rules as request, and carries the skey header. */
import { strict as assert } from "node:assert";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { clientOn, demoServer, endSessionOnServer } from "./helpers/fixtures";

const server = demoServer();

async function image(): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), "wxlogin-")), "avatar.png");
  await writeFile(path, Buffer.alloc(1234, 1));
  return path;
}

test("uploadFile carries the header: the server sees the session's user", async () => {
  const { api, platform } = clientOn(server());
  const me = await api.request<{ data: { openid: string } }>({ url: "/me" });

  const res = await api.uploadFile({ url: "/avatar", filePath: await image(), name: "file", formData: { album: "profile" } });

  assert.equal(res.statusCode, 200);
  assert.equal(typeof res.data, "string", "as wx.uploadFile hands it over");
  assert.deepEqual(JSON.parse(res.data).data, { openid: me.data.data.openid, size: 1234, form: { album: "profile" } });
  const upload = platform.sent.find((r) => r.url.endsWith("/avatar"))!;
  assert.equal(upload.header["X-WX-Skey"], api.skey);
});

test("uploadFile logs in first, and again (once) after a 401", async () => {
  const { api, platform } = clientOn(server());
  const filePath = await image();
  assert.equal((await api.uploadFile({ url: "/avatar", filePath, name: "file" })).statusCode, 200);
  await endSessionOnServer(server(), api.skey!);

  const res = await api.uploadFile({ url: "/avatar", filePath, name: "file" });

  assert.equal(res.statusCode, 200);
  assert.equal(platform.codes.length, 2);
  assert.equal(platform.sentTo("/avatar"), 3);
});

test("an upload the server refuses (400) resolves with the string body", async () => {
  const { api } = clientOn(server());

  const res = await api.uploadFile({ url: "/avatar", filePath: await image(), name: "photo" });

  assert.equal(res.statusCode, 400);
  assert.equal(JSON.parse(res.data).error, "file_missing");
});
