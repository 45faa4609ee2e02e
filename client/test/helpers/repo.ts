/**
 * The flask-wxlogin checkout the tests run against: example_app.py and README.rst.
 * By default the repo this client/ sits in; WXLOGIN_REPO_ROOT points elsewhere
 * (a client/ copied out of the repo, or a CI layout that keeps them apart).
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

const FILES = ["example_app.py", "README.rst"];

function repoRoot(): string {
  const root = process.env.WXLOGIN_REPO_ROOT ?? resolve(__dirname, "..", "..", "..");
  const missing = FILES.filter((name) => !existsSync(join(root, name)));
  if (missing.length > 0) {
    const where = process.env.WXLOGIN_REPO_ROOT === undefined ? "the repo around client/" : "WXLOGIN_REPO_ROOT";
    throw new Error(`The client tests need the flask-wxlogin repo: ${missing.join(" and ")} not found in ${root} (${where}). ` +
                    "Run them from client/ inside the repo, or set WXLOGIN_REPO_ROOT to the repo's root.");
  }
  return root;
}

/** The repo's root, checked once when the first test file loads. */
export const REPO_ROOT = repoRoot();
