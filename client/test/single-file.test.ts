/**
 * dist/index.js is one self-contained file for the mini program runtime: ES2015 syntax and built-ins
 * only (older base libraries and iOS JavaScriptCore have no more), no require, no Node, prints nothing.
 */
import { strict as assert } from "node:assert";
import { parse } from "acorn";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { createContext, runInContext } from "node:vm";
import type * as Sdk from "../dist/index";
import { createFakePlatform } from "./helpers/platform";
import { demoServer, endSessionOnServer } from "./helpers/fixtures";

const server = demoServer();
const source = readFileSync(join(__dirname, "..", "dist", "index.js"), "utf8");

/** Built-ins newer than ES2015, which a mini program runtime may lack: gone from the test's runtime. */
const NEWER_THAN_ES2015 = [
  "Object.entries", "Object.values", "Object.fromEntries", "Object.getOwnPropertyDescriptors", "Object.hasOwn",
  "Array.prototype.includes", "Array.prototype.flat", "Array.prototype.flatMap", "Array.prototype.at",
  "Array.prototype.findLast", "Array.prototype.findLastIndex",
  "Promise.prototype.finally", "Promise.allSettled", "Promise.any",
  "String.prototype.padStart", "String.prototype.padEnd", "String.prototype.trimStart", "String.prototype.trimEnd",
  "String.prototype.matchAll", "String.prototype.replaceAll", "String.prototype.at",
  "globalThis", "BigInt", "AggregateError", "WeakRef", "FinalizationRegistry", "Symbol.asyncIterator",
];

/**
 * Loads dist/index.js as a copied file would be: only `exports`, timers and the global `wx`, in an
 * ES2015 runtime. No console, require or process.
 */
function load(wx?: unknown): typeof Sdk {
  const exports = {};
  const context = createContext({ exports, setTimeout, wx });
  runInContext(NEWER_THAN_ES2015.map((name) => `delete ${name};`).join("\n"), context);
  assert.equal(runInContext("typeof Object.entries + typeof [].includes + typeof Promise.prototype.finally", context),
               "undefinedundefinedundefined");
  runInContext(source, context, { filename: "flask-wxlogin-client.js" });
  return exports as typeof Sdk;
}

test("the built file parses as ES2015", () => {
  assert.doesNotThrow(() => parse(source, { ecmaVersion: 2015, sourceType: "script" }));
});

test("the built file has no require, no dynamic import and no console", () => {
  assert.doesNotMatch(source, /\brequire\s*\(/);
  assert.doesNotMatch(source, /\bimport\s*\(/);
  assert.doesNotMatch(source, /\bconsole\./);
});

test("copied alone into a bare runtime, it logs in, re-logs in after a 401, and reports errors", async () => {
  const wx = createFakePlatform();
  const sdk = load(wx);
  const api = sdk.createClient({ baseURL: server().url });  // the global wx, by default

  assert.equal((await api.request({ url: "/me" })).statusCode, 200);
  await endSessionOnServer(server(), api.skey!);
  assert.equal((await api.request({ url: "/me" })).statusCode, 200);
  wx.scriptedCodes.push("demo-fail-40226-x");
  const error = await api.login().then(() => null, (e: unknown) => e);

  assert.equal(wx.codes.length, 3);
  assert.ok(error instanceof sdk.WxLoginError);
  assert.equal((error as Sdk.WxLoginError).error, "user_blocked");
  assert.equal((error as Error).name, "WxLoginError");
});

test("without a global wx and no platform, createClient says what to pass", () => {
  const sdk = load();
  assert.throws(() => sdk.createClient({ baseURL: "https://api.example.com" }), /pass platform/);
  assert.throws(() => sdk.createClient({ baseURL: "" }), /baseURL is required/);
});
