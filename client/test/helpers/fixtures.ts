/** What every test file shares: the demo server for the file, a client on a fake platform, server-side calls. */
import { strict as assert } from "node:assert";
import { after, before } from "node:test";
import { createClient, WxLoginError, type Client, type ClientOptions } from "../../dist/index";
import { createFakePlatform, type FakePlatform, type SentRequest, type Style } from "./platform";
import { startDemoServer, type DemoServer } from "./server";

/** Starts the example app before the file's tests and stops it after them. */
export function demoServer(): () => DemoServer {
  let server: DemoServer | null = null;
  before(async () => { server = await startDemoServer(); });
  after(async () => { await server?.stop(); });
  return () => {
    if (server === null) throw new Error("the demo server is not running");
    return server;
  };
}

export function clientOn(server: DemoServer, style: Style = "wx", options: Partial<ClientOptions> = {}):
    { api: Client; platform: FakePlatform } {
  const platform = createFakePlatform(style);
  return { api: createClient({ baseURL: server.url, platform, ...options }), platform };
}

/** What a logout from elsewhere (another tab, an admin's logout_all) does to the session. */
export async function endSessionOnServer(server: DemoServer, skey: string): Promise<void> {
  const answer = await fetch(server.url + "/auth/logout", { method: "POST", headers: { "X-WX-Skey": skey } });
  if (answer.status !== 200) throw new Error(`logout answered ${answer.status}`);
}

export async function statusWith(server: DemoServer, skey: string): Promise<number> {
  return (await fetch(server.url + "/me", { headers: { "X-WX-Skey": skey } })).status;
}

/** The codes the client posted to the login route, in order. */
export function postedCodes(platform: FakePlatform): string[] {
  return platform.sent
    .filter((r) => new URL(r.url).pathname.endsWith("/login"))
    .map((r) => (r.data as { code: string }).code);
}

/** The WxLoginError `promise` rejects with (and fails the test if it resolves, or rejects with something else). */
export async function rejection(promise: Promise<unknown>): Promise<WxLoginError> {
  const error = await promise.then(() => null, (e: unknown) => e);
  assert.ok(error instanceof WxLoginError, `expected a WxLoginError, got ${String(error)}`);
  return error;
}

export interface Held {
  /** Resolves with the request once the platform holds it. */
  readonly reached: Promise<SentRequest>;
  /** Lets it go on. */
  release(): void;
}

/**
 * Holds the next request to `path` at the fake platform, just before it goes out ("send") or just
 * after the server answered it ("answer"), so a test can act meanwhile. Other requests pass.
 */
export function holdNext(platform: FakePlatform, path: string, at: "send" | "answer"): Held {
  let reach: (request: SentRequest) => void = () => undefined;
  let release: () => void = () => undefined;
  const reached = new Promise<SentRequest>((resolve) => { reach = resolve; });
  const released = new Promise<void>((resolve) => { release = resolve; });
  let held = false;
  const hook = async (request: SentRequest): Promise<void> => {
    if (held || new URL(request.url).pathname !== path) return;
    held = true;
    reach(request);
    await released;
  };
  // Chained after the holds already set, so a test can hold requests to several paths.
  if (at === "send") {
    const earlier = platform.beforeSend;
    platform.beforeSend = async (request) => { await earlier?.(request); await hook(request); };
  } else {
    const earlier = platform.beforeAnswer;
    platform.beforeAnswer = async (request, response) => { await earlier?.(request, response); await hook(request); };
  }
  return { reached, release };
}

/** The skeys the server handed out in login answers, in order (read from what the platform saw). */
export function issuedSkeys(platform: FakePlatform): string[] {
  return platform.answers
    .filter((a) => new URL(a.request.url).pathname.endsWith("/login"))
    .map((a) => (a.data as { data?: { skey?: string } }).data?.skey)
    .filter((skey): skey is string => typeof skey === "string");
}
