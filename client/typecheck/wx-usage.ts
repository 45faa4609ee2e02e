/**
 * A mini program written against the official wx typings: compiled with
 * `tsc --noEmit --strict` (npm run typecheck), never run. `wx` is passed as
 * `platform` without a cast.
 */
import { createClient, WxLoginError, type Client, type Response } from "flask-wxlogin-client";

const api: Client = createClient({
  baseURL: "https://api.example.com",
  platform: wx,
  loginPath: "/auth/login",
  logoutPath: "/auth/logout",
  header: "X-WX-Skey",
  storageKey: "wxlogin.skey",
  maxConcurrent: 10,
  maxRetryAfter: 5,
});
const byDefault: Client = createClient({ baseURL: "https://api.example.com" });

/** Bodies typed by interfaces, and arrays, go as `data` and `formData` as they would to wx.request / wx.uploadFile. */
interface Phone {
  code: string;
}
interface Album {
  album: string;
  tags: string[];
}

export async function bodies(phone: Phone, album: Album, ids: number[], raw: ArrayBuffer): Promise<number[]> {
  const answers = await Promise.all([
    api.request({ url: "/phone", method: "POST", data: phone }),
    api.request({ url: "/batch", method: "POST", data: ids }),
    api.request({ url: "/raw", method: "PUT", data: raw }),
    api.request({ url: "/text", method: "POST", data: "a=1" }),
    api.uploadFile({ url: "/avatar", filePath: "wxfile://tmp.png", name: "file", formData: album }),
  ]);
  return answers.map((a) => a.statusCode);
}

interface Me {
  code: string;
  data: { openid: string };
}

export async function onLoad(): Promise<string | null> {
  const skey: string = await api.login();
  const res: Response<Me> = await api.request<Me>({ url: "/me", method: "GET", data: { page: 1 }, header: { "X-Trace": skey.length > 0 ? "1" : "0" } });
  const openid: string = res.data.data.openid;
  const upload: Response<string> = await api.uploadFile({ url: "/avatar", filePath: "wxfile://tmp.png", name: "file", formData: { album: "me" } });
  const status: number = upload.statusCode;
  try {
    await byDefault.request({ url: "/phone", method: "POST", data: { code: "x" } });
  } catch (error) {
    if (error instanceof WxLoginError) {
      const fields: [number, string, string, number | null, number | null] =
        [error.status, error.error, error.message, error.errcode, error.retryAfter];
      return fields.join() + openid + status;
    }
    throw error;
  }
  await api.logout();
  return api.skey;
}
