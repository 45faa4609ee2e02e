/**
 * uni-app and Taro build with bundlers (webpack, Vite: esbuild then Rollup).
 * An ES-module app that imports the package by name, bundled by esbuild for an
 * ES2015 runtime, must find createClient and WxLoginError and work.
 */
import { strict as assert } from "node:assert";
import { join } from "node:path";
import { test } from "node:test";
import { createContext, runInContext } from "node:vm";
import { build } from "esbuild";
import { demoServer, endSessionOnServer } from "./helpers/fixtures";
import { createFakePlatform } from "./helpers/platform";

const server = demoServer();
const PACKAGE = join(__dirname, "..");

const APP = `
import { createClient, WxLoginError } from "flask-wxlogin-client";
export async function run(platform, baseURL, endSession, refuseNextLogin) {
  const api = createClient({ baseURL, platform });
  const first = await api.request({ url: "/me" });
  await endSession(api.skey);
  const again = await api.request({ url: "/me" });
  refuseNextLogin();
  const error = await api.login().catch((e) => e);
  return [first.statusCode, again.statusCode, error instanceof WxLoginError && error.error];
}
`;

test("an ES-module app bundled by esbuild (as uni-app's and Taro's Vite builds do) imports and runs it", async () => {
  const bundle = await build({
    stdin: { contents: APP, resolveDir: PACKAGE, loader: "js" },
    bundle: true, write: false, format: "iife", globalName: "app", target: "es2015", platform: "neutral",
    mainFields: ["main"], alias: { "flask-wxlogin-client": PACKAGE }, logLevel: "silent",
  });
  const context = createContext({ setTimeout });
  runInContext(bundle.outputFiles[0].text, context);
  const platform = createFakePlatform("uni");

  const result = await context.app.run(platform, server().url, (skey: string) => endSessionOnServer(server(), skey),
                                       () => platform.scriptedCodes.push("demo-fail-40226-x"));

  assert.deepEqual(Array.from(result), [200, 200, "user_blocked"]);
  assert.equal(platform.codes.length, 3);
});
