/**
 * A fake `wx` (or `uni`, or `Taro`) with the mini program's callback
 * semantics, whose `request` and `uploadFile` do real HTTP with Node's fetch.
 * It counts what the client asks of it.
 */
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import type {
  Platform, PlatformLoginOptions, PlatformRequestOptions, PlatformResponse, PlatformUploadOptions,
} from "../../dist/index";

/**
 * `wx`: callbacks only. `uni`: callbacks, and request/uploadFile hand back a task object.
 * `taro`: every call also returns a promise, which rejects on failure (Taro's promisified APIs).
 */
export type Style = "wx" | "uni" | "taro";

export interface SentRequest {
  url: string;
  method: string;
  header: Record<string, string>;
  data: unknown;
}

export interface FakePlatform extends Platform {
  /** Every code `login` handed out, in order. */
  readonly codes: string[];
  /** Codes the next `login` calls hand out before falling back to fresh ones. */
  readonly scriptedCodes: string[];
  /** Every request and upload, as sent. */
  readonly sent: SentRequest[];
  /** Every answer the server gave, with its request, in the order they came. */
  readonly answers: Array<{ request: SentRequest; statusCode: number; data: unknown }>;
  readonly storage: Map<string, string>;
  /** Most requests and uploads in flight at once so far. */
  readonly maxInFlight: number;
  /** Called with each request before it goes out (tests hold one there while they act "meanwhile"). */
  beforeSend: ((request: SentRequest) => Promise<void>) | null;
  /** Called with each answer before `success` sees it (tests use it to act "meanwhile" on the server). */
  beforeAnswer: ((request: SentRequest, response: PlatformResponse) => Promise<void>) | null;
  /** The number of requests sent to `path` (the client adds the baseURL). */
  sentTo(path: string, method?: string): number;
}

type Callbacks<R> = { success: (result: R) => void; fail: (failure: { errMsg: string }) => void };

export function createFakePlatform(style: Style = "wx"): FakePlatform {
  const codes: string[] = [];
  const scriptedCodes: string[] = [];
  const sent: SentRequest[] = [];
  const answers: FakePlatform["answers"] = [];
  const storage = new Map<string, string>();
  let inFlight = 0;
  let maxInFlight = 0;

  /** Runs `work` and reports through the callbacks on a later tick, in the platform's style. */
  function settle<R>(callbacks: Callbacks<R>, work: () => Promise<R>, failPrefix: string): unknown {
    const outcome = work().then(
      (result) => { callbacks.success(result); return result; },
      (error: unknown) => {
        const failure = { errMsg: `${failPrefix}:fail ${describe(error)}` };
        callbacks.fail(failure);
        throw failure;
      },
    );
    if (style === "taro") return outcome;
    outcome.catch(() => undefined);
    return style === "uni" ? { abort(): void {} } : undefined;
  }

  async function track<R>(request: SentRequest, exchange: () => Promise<R & PlatformResponse>): Promise<R> {
    sent.push(request);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      if (platform.beforeSend !== null) await platform.beforeSend(request);
      const response = await exchange();
      answers.push({ request, statusCode: response.statusCode, data: response.data });
      if (platform.beforeAnswer !== null) await platform.beforeAnswer(request, response);
      return response;
    } finally {
      inFlight--;
    }
  }

  const platform: FakePlatform = {
    codes,
    scriptedCodes,
    sent,
    answers,
    storage,
    get maxInFlight() { return maxInFlight; },
    beforeSend: null,
    beforeAnswer: null,
    sentTo(path: string, method?: string): number {
      return sent.filter((r) => new URL(r.url).pathname === path && (method === undefined || r.method === method)).length;
    },
    login(options: PlatformLoginOptions): unknown {
      return settle(options, async () => {
        const code = scriptedCodes.shift() ?? `code-${randomUUID()}`;
        codes.push(code);
        return { code, errMsg: "login:ok" };
      }, "login");
    },
    request(options: PlatformRequestOptions): unknown {
      const request: SentRequest = { url: options.url, method: options.method, header: { ...options.header }, data: options.data };
      return settle(options, () => track(request, async () => {
        const init = bodyFor(options);
        const response = await fetch(init.url, { method: options.method, headers: init.headers, body: init.body });
        return { statusCode: response.status, data: parsed(await response.text()), header: headersOf(response), errMsg: "request:ok" };
      }), "request");
    },
    uploadFile(options: PlatformUploadOptions): unknown {
      const request: SentRequest = { url: options.url, method: "POST", header: { ...options.header }, data: options.formData };
      return settle(options, () => track(request, async () => {
        const form = new FormData();
        for (const [name, value] of Object.entries(options.formData ?? {})) form.append(name, String(value));
        form.append(options.name, new Blob([await readFile(options.filePath)]), basename(options.filePath));
        const response = await fetch(options.url, { method: "POST", headers: options.header, body: form });
        // wx.uploadFile hands back the body as a string and no headers.
        return { statusCode: response.status, data: await response.text(), errMsg: "uploadFile:ok" };
      }), "uploadFile");
    },
    getStorageSync(key: string): unknown {
      return storage.get(key) ?? "";
    },
    setStorageSync(key: string, value: string): unknown {
      storage.set(key, value);
      return undefined;
    },
    removeStorageSync(key: string): unknown {
      storage.delete(key);
      return undefined;
    },
  };
  return platform;
}

/** As wx.request does it: GET/HEAD data goes into the query; other data is JSON unless a string. */
function bodyFor(options: PlatformRequestOptions): { url: string; headers: Record<string, string>; body?: string } {
  const headers: Record<string, string> = { "content-type": "application/json", ...options.header };
  const data = options.data;
  if (data === undefined) return { url: options.url, headers };
  if (options.method === "GET" || options.method === "HEAD") {
    const url = new URL(options.url);
    for (const [name, value] of Object.entries(data as Record<string, unknown>)) url.searchParams.set(name, String(value));
    return { url: url.toString(), headers };
  }
  return { url: options.url, headers, body: typeof data === "string" ? data : JSON.stringify(data) };
}

/** As wx.request's default dataType "json": parsed when it parses, the text otherwise. */
function parsed(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function headersOf(response: globalThis.Response): Record<string, string> {
  const header: Record<string, string> = {};
  response.headers.forEach((value, name) => { header[name] = value; });
  return header;
}

function describe(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return error instanceof Error ? error.message + cause : String(error);
}
