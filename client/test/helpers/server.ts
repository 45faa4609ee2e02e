/**
 * The real example app (example_app.py, demo mode) on a free loopback port,
 * started for a test file and stopped after it. Its request log (werkzeug's,
 * on stderr) lets tests count what reached the server.
 */
import { ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { once } from "node:events";
import { resolve } from "node:path";

const ROOT = resolve(__dirname, "..", "..", "..");
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

async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, "127.0.0.1");
  await once(probe, "listening");
  const address = probe.address();
  probe.close();
  await once(probe, "close");
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

export async function startDemoServer(): Promise<DemoServer> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: ROOT, PYTHONUNBUFFERED: "1" };
  for (const name of REAL_SETTINGS) delete env[name];
  const python = process.env.PYTHON ?? "python3";
  const child: ChildProcess = spawn(python, ["example_app.py", "--port", String(port)], {
    cwd: ROOT, env, stdio: ["ignore", "ignore", "pipe"],
  });
  const requestLines: string[] = [];
  const waiters: Array<() => void> = [];
  let stderr = "";
  let pending = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    stderr += chunk;
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      // werkzeug colours some request lines with ANSI escapes.
      const request = /"([A-Z]+ \S+ HTTP\/[0-9.]+)" (\d{3})/.exec(line.replace(/\x1b\[[0-9;]*m/g, ""));
      if (request) requestLines.push(`${request[1]} ${request[2]}`);
    }
    waiters.splice(0).forEach((wake) => wake());
  });
  const exited = once(child, "exit");
  const url = `http://127.0.0.1:${port}`;

  async function waitForLine(test: (line: string) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (!requestLines.some(test)) {
      if (child.exitCode !== null) throw new Error(`example_app.py exited (${child.exitCode}):\n${stderr}`);
      if (Date.now() > deadline) throw new Error(`no ${what} in the server log:\n${stderr}`);
      await new Promise<void>((wake) => { waiters.push(wake); setTimeout(wake, 200); });
    }
  }

  async function settle(): Promise<void> {
    const marker = `/settle-${randomUUID()}`;
    await fetch(url + marker);
    await waitForLine((line) => line.includes(marker), marker);
  }

  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`example_app.py exited (${child.exitCode}):\n${stderr}`);
    try {
      await fetch(url + "/me");
      break;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`example_app.py did not answer on ${url}:\n${stderr}`);
      await new Promise((wake) => setTimeout(wake, 100));
    }
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
