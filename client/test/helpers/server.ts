/**
 * The real example app (example_app.py, demo mode) on a port the OS picks
 * (`--port 0`: no probe-then-bind race), started for a test file and stopped
 * after it. Its log (werkzeug's, on stderr) names the port and lets tests count
 * what reached the server.
 */
import { ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { REPO_ROOT } from "./repo";

/** The demo refuses to start with any of these set (it would talk to the real WeChat). */
const REAL_SETTINGS = ["WXLOGIN_APPID", "WXLOGIN_SECRET", "SECRET_KEY", "CACHE_REDIS_URL"];

export interface DemoServer {
  readonly url: string;
  /** Request lines logged so far, e.g. `"POST /auth/login HTTP/1.1" 200`. */
  readonly requestLines: string[];
  /** Resolves once every request answered so far is in `requestLines`. */
  settle(): Promise<void>;
  /** How many logged requests match `method path` (e.g. `"POST /auth/login"`), after `settle()`. */
  count(request: string): Promise<number>;
  stop(): Promise<void>;
}

export async function startDemoServer(): Promise<DemoServer> {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: REPO_ROOT, PYTHONUNBUFFERED: "1" };
  for (const name of REAL_SETTINGS) delete env[name];
  const python = process.env.PYTHON ?? "python3";
  const child: ChildProcess = spawn(python, ["example_app.py", "--port", "0"], {
    cwd: REPO_ROOT, env, stdio: ["ignore", "ignore", "pipe"],
  });
  const requestLines: string[] = [];
  const waiters: Array<() => void> = [];
  let stderr = "";
  const bound: { url: string | null } = { url: null };
  let pending = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    stderr += chunk;
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      // werkzeug colours some request lines with ANSI escapes.
      const plain = line.replace(/\x1b\[[0-9;]*m/g, "");
      const request = /"([A-Z]+ \S+ HTTP\/[0-9.]+)" (\d{3})/.exec(plain);
      if (request) requestLines.push(`${request[1]} ${request[2]}`);
      const running = /^ \* Running on (http:\/\/127\.0\.0\.1:\d+)$/.exec(plain);
      if (running && bound.url === null) bound.url = running[1];
    }
    waiters.splice(0).forEach((wake) => wake());
  });
  const exited = once(child, "exit");

  /** Resolves once `done()` holds, checking on each line of output (and every 200 ms). */
  async function waitFor(done: () => boolean, what: string, seconds: number): Promise<void> {
    const deadline = Date.now() + seconds * 1000;
    while (!done()) {
      if (child.exitCode !== null) throw new Error(`example_app.py exited (${child.exitCode}):\n${stderr}`);
      if (Date.now() > deadline) throw new Error(`no ${what} in the server log:\n${stderr}`);
      await new Promise<void>((wake) => { waiters.push(wake); setTimeout(wake, 200); });
    }
  }

  // werkzeug logs "Running on" once the socket listens: from then on it answers.
  await waitFor(() => bound.url !== null, "'Running on http://127.0.0.1:PORT'", 20);
  const url = bound.url!;

  async function settle(): Promise<void> {
    const marker = `/settle-${randomUUID()}`;
    await fetch(url + marker);
    await waitFor(() => requestLines.some((line) => line.includes(marker)), marker, 15);
  }

  return {
    url,
    requestLines,
    settle,
    async count(request: string): Promise<number> {
      await settle();
      return requestLines.filter((line) => line.startsWith(request + " ")).length;
    },
    async stop(): Promise<void> {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}
