/**
 * Public types of flask-wxlogin-client. Types only: this file emits no code,
 * so `dist/index.js` stays one self-contained file.
 */

/** HTTP methods `wx.request` accepts. */
export type Method = "OPTIONS" | "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "TRACE" | "CONNECT";

/** What every platform's `fail` callback receives. */
export interface PlatformFailure {
  errMsg: string;
}

/** What `request`'s `success` callback receives: called for every HTTP status. */
export interface PlatformResponse {
  statusCode: number;
  data: unknown;
  /** `wx.uploadFile` sends none; `uni` and `Taro` may. */
  header?: Record<string, unknown>;
}

/** What `uploadFile`'s `success` callback receives: the body is a string. */
export interface PlatformUploadResponse {
  statusCode: number;
  data: string;
  header?: Record<string, unknown>;
}

export interface PlatformLoginOptions {
  success: (result: { code: string }) => void;
  fail: (failure: PlatformFailure) => void;
}

export interface PlatformRequestOptions {
  url: string;
  method: Method;
  data?: string | object | ArrayBuffer;
  header: Record<string, string>;
  timeout?: number;
  success: (response: PlatformResponse) => void;
  fail: (failure: PlatformFailure) => void;
}

export interface PlatformUploadOptions {
  url: string;
  filePath: string;
  name: string;
  formData?: object;
  header: Record<string, string>;
  timeout?: number;
  success: (response: PlatformUploadResponse) => void;
  fail: (failure: PlatformFailure) => void;
}

/**
 * The few functions of `wx`, `uni` or `Taro` the client calls, in their
 * callback form, which all three support. `wx`, `uni` and `Taro` fit as they are.
 */
export interface Platform {
  login(options: PlatformLoginOptions): unknown;
  request(options: PlatformRequestOptions): unknown;
  uploadFile(options: PlatformUploadOptions): unknown;
  getStorageSync(key: string): unknown;
  setStorageSync(key: string, value: string): unknown;
  removeStorageSync(key: string): unknown;
}

/** Options of {@link createClient}. Only `baseURL` is required. */
export interface ClientOptions {
  /** The server's origin, e.g. `"https://api.example.com"`; every `url` is a path below it. Required. */
  baseURL: string;
  /** `wx`, `uni` or `Taro`. Default: the global `wx`. */
  platform?: Platform;
  /** The login route. Default `"/auth/login"`; `"/auth/<program>/login"` for another mini program. */
  loginPath?: string;
  /** The logout route. Default `"/auth/logout"`. */
  logoutPath?: string;
  /** The header that carries the skey (the server's `WXLOGIN_TOKEN_HEADER`). Default `"X-WX-Skey"`. */
  header?: string;
  /** The storage key the skey is kept under. Default `"wxlogin.skey"`. */
  storageKey?: string;
  /**
   * Most platform requests (and uploads) in flight at once, a whole number >= 1; more wait their turn, the login
   * and logout POSTs ahead of the rest. Default 10, `wx.request`'s own limit.
   */
  maxConcurrent?: number;
  /** Longest `Retry-After`, in seconds (finite, >= 0), the client waits for by itself before its one retry. Default 5. */
  maxRetryAfter?: number;
}

/** A request below `baseURL`, as for `wx.request`. */
export interface RequestOptions {
  /** A path below `baseURL`, e.g. `"/me"`: starts with "/" and not "//", else a TypeError. */
  url: string;
  /** Default `"GET"`. */
  method?: Method;
  /** The body (or, for GET, the query), as for `wx.request`: an object or array goes as JSON. */
  data?: string | object | ArrayBuffer;
  /** Extra headers; the skey header is added (and wins). */
  header?: Record<string, string>;
  /** Milliseconds, passed to the platform. */
  timeout?: number;
}

/** An upload below `baseURL`, as for `wx.uploadFile`. */
export interface UploadOptions {
  /** A path below `baseURL`, e.g. `"/avatar"`. */
  url: string;
  filePath: string;
  /** The form field name of the file. */
  name: string;
  /** Other form fields, as for `wx.uploadFile`. */
  formData?: object;
  header?: Record<string, string>;
  timeout?: number;
}

/** What `request` and `uploadFile` resolve with: the server's answer, any status it did not handle itself. */
export interface Response<T = unknown> {
  statusCode: number;
  data: T;
  header: Record<string, unknown>;
}

/** What {@link createClient} returns. */
export interface Client {
  /** Logs in now (`wx.login`, then `POST loginPath`), sending the stored skey so the server ends that session; concurrent calls share one login. Resolves with the new skey. */
  login(): Promise<string>;
  /** `wx.request` below `baseURL` with the skey; logs in first when there is none, and again (once) on a 401. */
  request<T = unknown>(options: RequestOptions): Promise<Response<T>>;
  /** `wx.uploadFile` below `baseURL`, by the same rules as `request`. */
  uploadFile(options: UploadOptions): Promise<Response<string>>;
  /**
   * Ends the session on the server, then forgets the skey (on a 2xx, or a 401: already ended). A 429/5xx
   * is retried once by the Retry-After rules; other failures keep the skey and reject, so it can be called
   * again. Logins and 401 retries begun before it are cut short (`logged_out`), ending their new sessions.
   */
  logout(): Promise<void>;
  /** The stored skey, or null. */
  readonly skey: string | null;
}

/** The fields of a {@link WxLoginError}, as the server's JSON error shape has them. */
export interface WxLoginErrorInit {
  status: number;
  error: string;
  message: string;
  errcode?: number | null;
  retryAfter?: number | null;
}
