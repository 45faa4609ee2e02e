/**
 * flask-wxlogin-client: the mini program's half of flask-wxlogin.
 *
 * One self-contained CommonJS file once built: no runtime dependency, no
 * Node API, no dynamic import, so it runs under DevTools' 构建 npm, uni-app and
 * Taro bundlers, or copied as it is.
 */
import type * as types from "./types";

// Named, not `export type *`: the .d.ts must parse in the TypeScript 4.x of older uni-app and Taro projects.
export type {
  Client, ClientOptions, Method, Platform, PlatformFailure, PlatformLoginOptions, PlatformRequestOptions,
  PlatformResponse, PlatformUploadOptions, PlatformUploadResponse, RequestOptions, Response, UploadOptions,
  WxLoginErrorInit,
} from "./types";

// The globals every mini program runtime has; declared here, not taken from a DOM or Node lib.
declare const wx: types.Platform | undefined;
declare function setTimeout(callback: () => void, ms: number): unknown;

/** 401 errors that mean "this skey is no good": log in again and retry once. */
const RELOGIN_ERRORS = ["skey_missing", "skey_invalid", "session_expired"];
/** 401 login errors that a fresh `wx.login` code cures. */
const CODE_ERRORS = ["code_invalid", "code_used"];
/** Statuses the server pairs with `Retry-After`. */
const RETRY_STATUSES = [429, 502, 503, 504];

/**
 * The one error the client rejects with. The fields come from the server's
 * JSON error shape; a network failure is `status` 0, `error` "network_error"
 * and the platform's `errMsg`.
 */
export class WxLoginError extends Error {
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  /** The server's machine-readable name, e.g. `"session_expired"`. */
  readonly error: string;
  /** WeChat's errcode, when the server passed one on; else null. */
  readonly errcode: number | null;
  /** The server's `Retry-After`, in seconds, on 429/502/503/504; else null. */
  readonly retryAfter: number | null;

  constructor(init: types.WxLoginErrorInit) {
    super(init.message);
    // Keeps instanceof working when an app's bundler compiles classes down to ES5.
    Object.setPrototypeOf(this, new.target.prototype);
    this.name = "WxLoginError";
    this.status = init.status;
    this.error = init.error;
    this.errcode = init.errcode ?? null;
    this.retryAfter = init.retryAfter ?? null;
  }
}

/**
 * A client bound to one server and one platform. Holds no global state:
 * two clients (say, for two mini programs) need two `storageKey`s.
 */
export function createClient(options: types.ClientOptions): types.Client {
  if (!options || typeof options.baseURL !== "string" || options.baseURL === "") {
    throw new TypeError("createClient: baseURL is required");
  }
  const platform = platformOf(options);
  const baseURL = options.baseURL.replace(/\/+$/, "");
  const loginPath = options.loginPath ?? "/auth/login";
  const logoutPath = options.logoutPath ?? "/auth/logout";
  const skeyHeader = options.header ?? "X-WX-Skey";
  const storageKey = options.storageKey ?? "wxlogin.skey";
  const maxRetryAfter = options.maxRetryAfter ?? 5;
  const limit = createLimiter(options.maxConcurrent ?? 10);
  let loggingIn: Promise<string> | null = null;

  function stored(): string | null {
    const value = platform.getStorageSync(storageKey);
    return typeof value === "string" && value !== "" ? value : null;
  }

  function headerWith(extra: Record<string, string> | undefined, skey: string | null): Record<string, string> {
    const header: Record<string, string> = Object.assign({}, extra);
    if (skey !== null) header[skeyHeader] = skey;
    return header;
  }

  function send(request: types.RequestOptions, skey: string | null): Promise<types.PlatformResponse> {
    return limit(() => new Promise<types.PlatformResponse>((resolve, reject) => {
      absorb(platform.request({
        url: baseURL + request.url, method: request.method ?? "GET", data: request.data,
        header: headerWith(request.header, skey), timeout: request.timeout,
        success: resolve, fail: (failure) => reject(networkError(failure)),
      }));
    }));
  }

  function upload(request: types.UploadOptions, skey: string): Promise<types.PlatformUploadResponse> {
    return limit(() => new Promise<types.PlatformUploadResponse>((resolve, reject) => {
      absorb(platform.uploadFile({
        url: baseURL + request.url, filePath: request.filePath, name: request.name, formData: request.formData,
        header: headerWith(request.header, skey), timeout: request.timeout,
        success: resolve, fail: (failure) => reject(networkError(failure)),
      }));
    }));
  }

  function freshCode(): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      absorb(platform.login({
        success: (result) => resolve(result.code),
        fail: (failure) => reject(networkError(failure)),
      }));
    });
  }

  /** Seconds to wait before the one retry of a 429/502/503/504, or null: not worth waiting for. */
  function waitFor(error: WxLoginError): number | null {
    const seconds = error.retryAfter;
    return RETRY_STATUSES.indexOf(error.status) >= 0 && seconds !== null && seconds <= maxRetryAfter ? seconds : null;
  }

  /** One login. A fresh code after code_invalid/code_used, one wait for Retry-After: each at most once. */
  async function loginRound(old: string | null, recoded: boolean, waited: boolean): Promise<string> {
    const code = await freshCode();
    const answer = await send({ url: loginPath, method: "POST", data: { code } }, old);
    if (answer.statusCode === 200) {
      const skey = skeyIn(answer.data);
      if (skey === null) {
        throw new WxLoginError({ status: 200, error: "login_answer_invalid", message: "The login answer carries no skey." });
      }
      platform.setStorageSync(storageKey, skey);
      return skey;
    }
    const error = errorOf(answer);
    if (answer.statusCode === 401 && CODE_ERRORS.indexOf(error.error) >= 0 && !recoded) {
      return loginRound(old, true, waited);
    }
    const wait = waited ? null : waitFor(error);
    if (wait === null) throw error;
    await sleep(wait);
    return loginRound(old, recoded, true);
  }

  /** Joins the login in flight, or starts one that sends `old` so the server ends that session. */
  function login(old: string | null): Promise<string> {
    if (loggingIn === null) {
      const done = (): void => { loggingIn = null; };
      loggingIn = loginRound(old, false, false);
      loggingIn.then(done, done);
    }
    return loggingIn;
  }

  /** After a 401 for `failed`: the skey another call already got, or one shared new login. */
  function reloginAfter(failed: string): Promise<string> {
    if (loggingIn !== null) return loggingIn;
    const current = stored();
    if (current !== null && current !== failed) return Promise.resolve(current);
    if (current !== null) platform.removeStorageSync(storageKey);
    return login(failed);
  }

  /**
   * Sends with the skey (after the login in flight, if any) and applies the rules: on a 401 for
   * the skey, one re-login and one retry; on 429/502/503/504, one wait and retry for GET/HEAD.
   * Each happens at most once, so a call sends at most three times.
   */
  async function withSession<A extends types.PlatformResponse>(method: types.Method, sendWith: (skey: string) => Promise<A>): Promise<A> {
    let skey = loggingIn !== null ? await loggingIn : stored() ?? await login(null);
    let relogged = false;
    let waited = false;
    for (;;) {
      const answer = await sendWith(skey);
      const status = answer.statusCode;
      if (status !== 400 && status !== 401 && RETRY_STATUSES.indexOf(status) < 0) return answer;
      const error = errorOf(answer);
      if (status === 401 && RELOGIN_ERRORS.indexOf(error.error) >= 0) {
        if (relogged) throw error;
        relogged = true;
        skey = await reloginAfter(skey);
      } else if (status === 400 && error.error === "session_key_stale") {
        await login(skey);
        throw error;
      } else if (RETRY_STATUSES.indexOf(status) >= 0) {
        const wait = waited || (method !== "GET" && method !== "HEAD") ? null : waitFor(error);
        if (wait === null) throw error;
        waited = true;
        await sleep(wait);
      } else {
        return answer;
      }
    }
  }

  return {
    login: () => login(stored()),
    request<T>(request: types.RequestOptions): Promise<types.Response<T>> {
      return withSession(request.method ?? "GET", (skey) => send(request, skey)).then(responseOf) as Promise<types.Response<T>>;
    },
    uploadFile(request: types.UploadOptions): Promise<types.Response<string>> {
      return withSession("POST", (skey) => upload(request, skey)).then(responseOf);
    },
    async logout(): Promise<void> {
      const skey = stored();
      if (skey === null) return;
      platform.removeStorageSync(storageKey);
      const answer = await send({ url: logoutPath, method: "POST" }, skey);
      if (answer.statusCode === 401 || (answer.statusCode >= 200 && answer.statusCode < 300)) return;
      throw errorOf(answer);
    },
    get skey(): string | null {
      return stored();
    },
  };
}

function platformOf(options: types.ClientOptions): types.Platform {
  const platform = options.platform ?? (typeof wx === "undefined" ? undefined : wx);
  if (!platform) throw new TypeError("createClient: no global wx here; pass platform (uni or Taro)");
  return platform;
}

/** The answer as `wx.request` gives it: status, body, headers; nothing else. */
function responseOf<D>(answer: { statusCode: number; data: D; header?: Record<string, unknown> }): types.Response<D> {
  return { statusCode: answer.statusCode, data: answer.data, header: answer.header ?? {} };
}

/** Runs at most `max` tasks at once; the rest wait in order. */
function createLimiter(max: number): <T>(task: () => Promise<T>) => Promise<T> {
  if (!(max >= 1)) throw new TypeError("createClient: maxConcurrent must be at least 1");
  let active = 0;
  const waiting: Array<() => void> = [];
  const release = (): void => {
    const next = waiting.shift();
    if (next) next();
    else active--;
  };
  return <T>(task: () => Promise<T>): Promise<T> => {
    const turn = new Promise<void>((resolve) => {
      if (active < max) {
        active++;
        resolve();
      } else {
        waiting.push(resolve);
      }
    });
    return turn.then(task).then(
      (value) => { release(); return value; },
      (reason: unknown) => { release(); throw reason; },
    );
  };
}

/** Taro's callback APIs also return a promise that rejects on failure: the callbacks already told us. */
function absorb(returned: unknown): void {
  if (returned !== null && typeof returned === "object" && typeof (returned as { catch?: unknown }).catch === "function") {
    (returned as Promise<unknown>).catch(() => undefined);
  }
}

function networkError(failure: types.PlatformFailure | undefined): WxLoginError {
  const message = failure && typeof failure.errMsg === "string" ? failure.errMsg : "request:fail";
  return new WxLoginError({ status: 0, error: "network_error", message });
}

function sleep(seconds: number): Promise<void> {
  return new Promise<void>((resolve) => { setTimeout(resolve, seconds * 1000); });
}

/** The body as an object: platforms hand JSON over parsed, except uploadFile (and some dataType settings). */
function bodyOf(data: unknown): Record<string, unknown> | null {
  let body = data;
  if (typeof body === "string") {
    try {
      body = JSON.parse(body);
    } catch (_) {
      return null;
    }
  }
  return body !== null && typeof body === "object" && !Array.isArray(body) ? body as Record<string, unknown> : null;
}

function skeyIn(data: unknown): string | null {
  const inner = bodyOf(bodyOf(data)?.data);
  const skey = inner === null ? undefined : inner.skey;
  return typeof skey === "string" && skey !== "" ? skey : null;
}

/** The server's JSON error shape as a WxLoginError; any other body gives "http_error". */
function errorOf(answer: types.PlatformResponse): WxLoginError {
  const body = bodyOf(answer.data) ?? {};
  return new WxLoginError({
    status: answer.statusCode,
    error: typeof body.error === "string" ? body.error : "http_error",
    message: typeof body.message === "string" ? body.message : `The server answered HTTP ${answer.statusCode}.`,
    errcode: typeof body.errcode === "number" ? body.errcode : null,
    retryAfter: retryAfterOf(answer.header),
  });
}

/** `Retry-After` in whole seconds (delta or HTTP date), looked up case-blind; null when absent or unreadable. */
function retryAfterOf(header: Record<string, unknown> | undefined): number | null {
  if (!header) return null;
  for (const name of Object.keys(header)) {
    if (name.toLowerCase() !== "retry-after") continue;
    const value = String(header[name]).trim();
    if (/^\d+$/.test(value)) return parseInt(value, 10);
    const date = Date.parse(value);
    return isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
  }
  return null;
}
