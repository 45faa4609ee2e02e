/** createClient refuses options it cannot work with, at once, with a TypeError that names the option. */
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { createClient, type ClientOptions } from "../dist/index";
import { createFakePlatform } from "./helpers/platform";

const BAD: Array<[string, Partial<ClientOptions>, RegExp]> = [
  ["maxConcurrent 0", { maxConcurrent: 0 }, /maxConcurrent/],
  ["maxConcurrent 2.5", { maxConcurrent: 2.5 }, /maxConcurrent/],
  ["maxConcurrent Infinity", { maxConcurrent: Infinity }, /maxConcurrent/],
  ["maxConcurrent NaN", { maxConcurrent: NaN }, /maxConcurrent/],
  ["maxConcurrent \"10\"", { maxConcurrent: "10" as unknown as number }, /maxConcurrent/],
  ["maxRetryAfter -1", { maxRetryAfter: -1 }, /maxRetryAfter/],
  ["maxRetryAfter Infinity", { maxRetryAfter: Infinity }, /maxRetryAfter/],
  ["maxRetryAfter NaN", { maxRetryAfter: NaN }, /maxRetryAfter/],
  ["header \"\"", { header: "" }, /header/],
  ["storageKey \"\"", { storageKey: "" }, /storageKey/],
  ["loginPath without a leading /", { loginPath: "auth/login" }, /loginPath/],
  ["logoutPath //host", { logoutPath: "//evil.example/logout" }, /logoutPath/],
];

for (const [name, options, message] of BAD) {
  test(`createClient refuses ${name} with a TypeError`, () => {
    assert.throws(() => createClient({ baseURL: "https://api.example.com", platform: createFakePlatform(), ...options }),
                  (error: unknown) => error instanceof TypeError && message.test(error.message));
  });
}

test("createClient takes the edge values: maxConcurrent 1, maxRetryAfter 0", () => {
  assert.doesNotThrow(() => createClient({ baseURL: "https://api.example.com", platform: createFakePlatform(), maxConcurrent: 1, maxRetryAfter: 0 }));
});
