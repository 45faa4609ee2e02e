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
 * JSON error shape, except for the client's own: "network_error" (status 0:
 * the platform's `fail`, or a platform call that threw, with its `errMsg`),
 * "logged_out" (status 0: logout() cut the call short), "login_answer_invalid"
 * (a 200 login answer without an skey) and "http_error" (an error answer
 * that is not the server's JSON).
 */
export class WxLoginError extends Error {
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  /** The server's machine-readable name, e.g. `"session_expired"`, or one of the client's own (see above). */
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

/** A send's answer, the skey it went with, and the re-login its 401 started or joined (if any). */
interface Sent<A> {
  answer: A;
  skey: string;
  relogin: Promise<string> | null;
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
  const loginPath = pathOption(options.loginPath, "/auth/login", "loginPath");
  const logoutPath = pathOption(options.logoutPath, "/auth/logout", "logoutPath");
  const skeyHeader = textOption(options.header, "X-WX-Skey", "header");
  const storageKey = textOption(options.storageKey, "wxlogin.skey", "storageKey");
  const maxRetryAfter = options.maxRetryAfter ?? 5;
  if (typeof maxRetryAfter !== "number" || !isFinite(maxRetryAfter) || maxRetryAfter < 0) {
    throw new TypeError("createClient: maxRetryAfter must be a finite number of seconds, 0 or more");
  }
  const limit = createLimiter(options.maxConcurrent ?? 10);
  /** Bumped by every logout(): a login or retry begun before it must not leave a session behind. */
  let generation = 0;
  /** The login in flight, shared by every call that needs one; logout() drops it (it ends itself). */
  let loggingIn: { skey: Promise<string> } | null = null;

  function stored(): string | null {
    const value = platform.getStorageSync(storageKey);
    return typeof value === "string" && value !== "" ? value : null;
  }

  function headerWith(extra: Record<string, string> | undefined, skey: string | null): Record<string, string> {
    const header: Record<string, string> = Object.assign({}, extra);
    if (skey !== null) header[skeyHeader] = skey;
    return header;
  }

  /** The platform call in its callback form; one that throws rejects like `fail`, without the skey in its message. */
  function call<R>(api: string, skey: string | null, start: (success: (result: R) => void, fail: (failure: types.PlatformFailure) => void) => unknown): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      try {
        absorb(start(resolve, (failure) => reject(networkError(failure))));
      } catch (thrown) {
        const text = thrown instanceof Error ? thrown.message : String(thrown);
        const message = /:fail/.test(text) ? text : `${api}:fail ${text}`;
        reject(networkError({ errMsg: skey === null ? message : message.split(skey).join("***") }));
      }
    });
  }

  /** A login or logout POST: it waits for a slot like any request, but ahead of the requests waiting (they wait for it). */
  function sendFirst(request: types.RequestOptions, skey: string | null): Promise<types.PlatformResponse> {
    return limit(() => sendNow(request, skey), true);
  }

  function sendNow(request: types.RequestOptions, skey: string | null): Promise<types.PlatformResponse> {
    return call<types.PlatformResponse>("request", skey, (success, fail) => platform.request({
      url: baseURL + request.url, method: request.method ?? "GET", data: request.data,
      header: headerWith(request.header, skey), timeout: request.timeout, success, fail,
    }));
  }

  function uploadNow(request: types.UploadOptions, skey: string): Promise<types.PlatformUploadResponse> {
    return call<types.PlatformUploadResponse>("uploadFile", skey, (success, fail) => platform.uploadFile({
      url: baseURL + request.url, filePath: request.filePath, name: request.name, formData: request.formData,
      header: headerWith(request.header, skey), timeout: request.timeout, success, fail,
    }));
  }

  function freshCode(): Promise<string> {
    return call<{ code: string }>("login", null, (success, fail) => platform.login({ success, fail })).then((result) => result.code);
  }

  /** Seconds to wait before the one retry of a 429/502/503/504, or null: not worth waiting for. */
  function waitFor(error: WxLoginError): number | null {
    const seconds = error.retryAfter;
    return RETRY_STATUSES.indexOf(error.status) >= 0 && seconds !== null && seconds <= maxRetryAfter ? seconds : null;
  }

  /**
   * One login for generation `gen`. A fresh code after code_invalid/code_used, one wait for Retry-After:
   * each at most once. If logout() ran meanwhile, the new session is ended on the server, not stored.
   */
  async function loginRound(old: string | null, gen: number, recoded: boolean, waited: boolean): Promise<string> {
    const code = await freshCode();
    if (gen !== generation) throw loggedOut();
    const answer = await sendFirst({ url: loginPath, method: "POST", data: { code } }, old);
    if (answer.statusCode === 200) {
      const skey = skeyIn(answer.data);
      if (skey === null) {
        throw new WxLoginError({ status: 200, error: "login_answer_invalid", message: "The login answer carries no skey." });
      }
      if (gen !== generation) {
        await sendFirst({ url: logoutPath, method: "POST" }, skey).then(ignore, ignore);
        throw loggedOut();
      }
      platform.setStorageSync(storageKey, skey);
      return skey;
    }
    const error = errorOf(answer);
    if (answer.statusCode === 401 && CODE_ERRORS.indexOf(error.error) >= 0 && !recoded) {
      return loginRound(old, gen, true, waited);
    }
    const wait = waited ? null : waitFor(error);
    if (wait === null) throw error;
    await sleep(wait);
    return loginRound(old, gen, recoded, true);
  }

  /** Joins the login in flight, or starts one that sends `old` so the server ends that session. */
  function login(old: string | null): Promise<string> {
    if (loggingIn === null) {
      const flight = { skey: loginRound(old, generation, false, false) };
      const done = (): void => {
        if (loggingIn === flight) loggingIn = null;
      };
      flight.skey.then(done, done);
      loggingIn = flight;
    }
    return loggingIn.skey;
  }

  /**
   * One send for a call of generation `gen`. The skey is read once the slot is granted, so a queued
   * call never sends one that a 401 has condemned meanwhile; with a login in flight, or no skey, the
   * slot goes back while the login runs. A 401 for the stored skey starts the re-login before the slot
   * is released, so the requests queued behind it wait for that login instead of sending the dead skey.
   */
  async function sendInTurn<A extends types.PlatformResponse>(gen: number, relogged: boolean, sendWith: (skey: string) => Promise<A>):
      Promise<Sent<A>> {
    for (;;) {
      const turn = await limit<Sent<A> | { wait: Promise<string> }>(() => {
        if (gen !== generation) throw loggedOut();
        if (loggingIn !== null) return Promise.resolve({ wait: loggingIn.skey });
        const skey = stored();
        if (skey === null) return Promise.resolve({ wait: login(null) });
        return sendWith(skey).then((answer) => ({
          answer, skey, relogin: relogged || gen !== generation ? null : reloginAfter(answer, skey),
        }));
      }, false);
      if ("wait" in turn) await turn.wait;
      else return turn;
    }
  }

  /** After `answer` to a send with `skey`: null, or the shared re-login a 401 for the stored skey calls for. */
  function reloginAfter(answer: types.PlatformResponse, skey: string): Promise<string> | null {
    if (answer.statusCode !== 401 || RELOGIN_ERRORS.indexOf(errorOf(answer).error) < 0) return null;
    if (loggingIn !== null) return loggingIn.skey;
    if (stored() !== skey) return null;
    platform.removeStorageSync(storageKey);
    return login(skey);
  }

  /**
   * Sends with the skey and applies the rules: on a 401 for the skey, one re-login and one retry; on
   * 429/502/503/504, one wait and retry for GET/HEAD. Each happens at most once, so a call sends at most
   * three times. A call begun before a logout() never logs in: it rejects instead.
   */
  async function withSession<A extends types.PlatformResponse>(method: types.Method, sendWith: (skey: string) => Promise<A>): Promise<A> {
    const gen = generation;
    let relogged = false;
    let waited = false;
    for (;;) {
      const { answer, skey, relogin } = await sendInTurn(gen, relogged, sendWith);
      const status = answer.statusCode;
      if (status !== 400 && status !== 401 && RETRY_STATUSES.indexOf(status) < 0) return answer;
      const error = errorOf(answer);
      if (status === 401 && RELOGIN_ERRORS.indexOf(error.error) >= 0) {
        if (relogged || gen !== generation) throw error;
        relogged = true;
        if (relogin !== null) await relogin;
      } else if (status === 400 && error.error === "session_key_stale") {
        // Only the session this request used is stale: a login since then already brought a fresh session_key.
        if (loggingIn !== null) await loggingIn.skey;
        else if (gen === generation && stored() === skey) await login(skey);
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
      checkPath(request && request.url, "url");
      return withSession(request.method ?? "GET", (skey) => sendNow(request, skey)).then(responseOf) as Promise<types.Response<T>>;
    },
    uploadFile(request: types.UploadOptions): Promise<types.Response<string>> {
      checkPath(request && request.url, "url");
      return withSession("POST", (skey) => uploadNow(request, skey)).then(responseOf);
    },
    /**
     * Ends the session on the server, then forgets the skey (on 2xx, or 401: already gone). A 429/5xx
     * is retried once by the Retry-After rules; any other failure keeps the skey and rejects, so a second
     * logout() can still end the session. Logins and 401 retries begun before it are cut short.
     */
    async logout(): Promise<void> {
      generation++;
      loggingIn = null;
      const skey = stored();
      if (skey === null) return;
      let waited = false;
      for (;;) {
        const answer = await sendFirst({ url: logoutPath, method: "POST" }, skey);
        if (answer.statusCode === 401 || (answer.statusCode >= 200 && answer.statusCode < 300)) {
          if (stored() === skey) platform.removeStorageSync(storageKey);
          return;
        }
        const error = errorOf(answer);
        const wait = waited ? null : waitFor(error);
        if (wait === null) throw error;
        waited = true;
        await sleep(wait);
      }
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

/** Runs at most `max` tasks at once; the rest wait in order, a `first` one ahead of the others. */
function createLimiter(max: number): <T>(task: () => Promise<T>, first: boolean) => Promise<T> {
  if (typeof max !== "number" || max % 1 !== 0 || max < 1) {
    throw new TypeError("createClient: maxConcurrent must be a whole number, 1 or more");
  }
  let active = 0;
  const waiting: Array<() => void> = [];
  const release = (): void => {
    const next = waiting.shift();
    if (next) next();
    else active--;
  };
  return <T>(task: () => Promise<T>, first: boolean): Promise<T> => {
    const turn = new Promise<void>((resolve) => {
      if (active < max) {
        active++;
        resolve();
      } else if (first) {
        waiting.unshift(resolve);
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

/** A path below baseURL: "/" then not "/", so nothing can name another host ("@evil.com", "//evil.com"). */
function checkPath(path: unknown, name: string): string {
  if (typeof path !== "string" || path.charAt(0) !== "/" || path.charAt(1) === "/") {
    throw new TypeError(`${name} must be a path below baseURL, starting with "/" (not "//")`);
  }
  return path;
}

function pathOption(value: string | undefined, byDefault: string, name: string): string {
  return value === undefined ? byDefault : checkPath(value, `createClient: ${name}`);
}

function textOption(value: string | undefined, byDefault: string, name: string): string {
  if (value === undefined) return byDefault;
  if (typeof value !== "string" || value === "") throw new TypeError(`createClient: ${name} must be a non-empty string`);
  return value;
}

function ignore(): void {
  // A best-effort call: its outcome changes nothing.
}

/** A call begun before logout(): it neither logs in nor sends. */
function loggedOut(): WxLoginError {
  return new WxLoginError({ status: 0, error: "logged_out", message: "logout() ran while this call waited: it was cut short." });
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

/**
 * `Retry-After` in whole seconds, looked up case-blind: digits only, or an HTTP date (which ends "GMT").
 * Anything else ("1.5", "-1", junk) is null: Date.parse would read many such values as dates.
 */
function retryAfterOf(header: Record<string, unknown> | undefined): number | null {
  if (!header) return null;
  for (const name of Object.keys(header)) {
    if (name.toLowerCase() !== "retry-after") continue;
    const value = String(header[name]).trim();
    if (/^\d+$/.test(value)) return parseInt(value, 10);
    const date = /GMT$/.test(value) ? Date.parse(value) : NaN;
    return isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
  }
  return null;
}
