/**
 * A reverse proxy in front of the example app, as nginx or a cloud load
 * balancer would be: it passes every request through, except the ones a test
 * tells it to refuse (an overloaded upstream's 503 with Retry-After, say).
 */
import { createServer, request as forward, type IncomingMessage, type ServerResponse } from "node:http";
import { once } from "node:events";

export interface Refusal {
  status: number;
  retryAfter?: string;
  /** Default: an HTML error page, as a gateway sends. */
  body?: string;
  contentType?: string;
}

export interface Gateway {
  readonly url: string;
  /** The next `times` requests for `method path` get `refusal` instead of the app's answer. */
  refuseNext(method: string, path: string, refusal: Refusal, times?: number): void;
  stop(): Promise<void>;
}

export async function startGateway(upstream: string): Promise<Gateway> {
  const refusals: Array<{ key: string; refusal: Refusal }> = [];
  const target = new URL(upstream);

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const key = `${req.method} ${new URL(req.url ?? "/", upstream).pathname}`;
    const index = refusals.findIndex((r) => r.key === key);
    if (index >= 0) {
      const { refusal } = refusals.splice(index, 1)[0];
      req.resume();
      const body = refusal.body ?? `<html><body><h1>${refusal.status}</h1>nginx</body></html>`;
      const headers: Record<string, string> = { "content-type": refusal.contentType ?? "text/html" };
      if (refusal.retryAfter !== undefined) headers["retry-after"] = refusal.retryAfter;
      res.writeHead(refusal.status, headers).end(body);
      return;
    }
    const upstreamRequest = forward({
      host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers,
    }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstreamRequest.on("error", () => res.writeHead(502).end());
    req.pipe(upstreamRequest);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return {
    url: `http://127.0.0.1:${address.port}`,
    refuseNext(method: string, path: string, refusal: Refusal, times = 1): void {
      for (let i = 0; i < times; i++) refusals.push({ key: `${method} ${path}`, refusal });
    },
    async stop(): Promise<void> {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}
