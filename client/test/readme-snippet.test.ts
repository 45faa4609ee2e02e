/**
 * README.rst keeps a minimal, seed-compatible snippet for apps that do not
 * take the SDK. It must keep working against the server: run it, as written
 * there, on the fake wx against the example app.
 */
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { demoServer, endSessionOnServer } from "./helpers/fixtures";
import { createFakePlatform } from "./helpers/platform";
import { REPO_ROOT } from "./helpers/repo";

const server = demoServer();

interface SnippetApp {
  globalData: { baseURL: string };
  login(): Promise<string>;
  request(options: { url: string; method?: string; data?: unknown }): Promise<{ statusCode: number; data: { code: string } }>;
}

/** The `// app.js` block of README.rst's minimal snippet, run with `App` and `wx` as a mini program has them. */
function readmeApp(wx: unknown, baseURL: string): SnippetApp {
  const readme = readFileSync(join(REPO_ROOT, "README.rst"), "utf8");
  const start = readme.indexOf("    // app.js\n");
  assert.ok(start >= 0, "README.rst has no '// app.js' snippet");
  const lines: string[] = [];
  for (const line of readme.slice(start).split("\n")) {
    if (line.trim() !== "" && !line.startsWith("    ")) break;
    lines.push(line.slice(4));
  }
  let app: SnippetApp | null = null;
  new Function("App", "wx", lines.join("\n"))((definition: SnippetApp) => { app = definition; }, wx);
  assert.ok(app !== null, "the snippet did not call App()");
  const defined = app as SnippetApp;
  defined.globalData.baseURL = baseURL;
  return defined;
}

test("README's minimal snippet logs in, calls a protected route, and logs in again after a 401", async () => {
  const wx = createFakePlatform();
  const app = readmeApp(wx, server().url);

  const first = await app.request({ url: "/me" });
  assert.equal(first.statusCode, 200);
  await endSessionOnServer(server(), wx.getStorageSync("skey") as string);
  const again = await app.request({ url: "/me" });

  assert.equal(again.statusCode, 200);
  assert.equal(wx.codes.length, 2);
});

test("README's claim holds: the minimal snippet logs in once per concurrent request (the SDK: once in all)", async () => {
  const wx = createFakePlatform();
  const app = readmeApp(wx, server().url);
  const before = await server().count("POST /auth/login");

  const answers = await Promise.all(Array.from({ length: 5 }, () => app.request({ url: "/me" })));

  assert.deepEqual(answers.map((a) => a.statusCode), Array(5).fill(200));
  assert.equal(wx.codes.length, 5);
  assert.equal(await server().count("POST /auth/login") - before, 5, "five sessions, four of them orphaned");
});
