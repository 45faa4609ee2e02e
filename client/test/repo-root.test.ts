/** The tests find the repo (example_app.py, README.rst) around client/, or at WXLOGIN_REPO_ROOT; else they say what is missing. */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "./helpers/repo";

const HELPER = join(__dirname, "helpers", "repo.js");

function loadWith(root: string): { status: number | null; stderr: string } {
  const loaded = spawnSync(process.execPath, ["-e", `console.log(require(${JSON.stringify(HELPER)}).REPO_ROOT)`], {
    env: { ...process.env, WXLOGIN_REPO_ROOT: root }, encoding: "utf8",
  });
  return { status: loaded.status, stderr: loaded.stderr };
}

test("WXLOGIN_REPO_ROOT without the repo's files: a clear error up front, naming what is missing and where", () => {
  const empty = mkdtempSync(join(tmpdir(), "not-a-repo-"));

  const { status, stderr } = loadWith(empty);

  assert.notEqual(status, 0);
  assert.match(stderr, /example_app\.py and README\.rst not found in /);
  assert.ok(stderr.includes(empty));
  assert.match(stderr, /set WXLOGIN_REPO_ROOT to the repo's root/);
});

test("WXLOGIN_REPO_ROOT pointing at the repo is used", () => {
  const { status, stderr } = loadWith(REPO_ROOT);

  assert.equal(status, 0, stderr);
});
