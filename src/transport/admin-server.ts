/**
 * The admin listener (plain HTTP, its own port): `/metrics` in Prometheus
 * text form (the service's registry plus Node's default process metrics),
 * `/healthz` (the process is alive: always 200) and `/readyz` (200 only
 * while the backend is ready and the service is not draining, else 503).
 */
import http from "node:http";
import type net from "node:net";
import type { Logger } from "pino";
import { collectDefaultMetrics, type Registry } from "prom-client";

export interface AdminServerOptions {
  readonly registry: Registry;
  /** True when the service should receive traffic. */
  readonly ready: () => boolean;
  readonly logger: Logger;
}

export interface AdminServer {
  listen(port: number, host: string): Promise<number>;
  close(): Promise<void>;
}

export function createAdminServer(options: AdminServerOptions): AdminServer {
  const { registry, ready, logger } = options;
  collectDefaultMetrics({ register: registry });

  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    switch (path) {
      case "/healthz":
        res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
        return;
      case "/readyz": {
        const ok = ready();
        res
          .writeHead(ok ? 200 : 503, { "content-type": "text/plain" })
          .end(ok ? "ready\n" : "not ready\n");
        return;
      }
      case "/metrics":
        registry.metrics().then(
          (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
          (error: unknown) => {
            logger.error({ err: error }, "metrics collection failed");
            res.writeHead(500).end();
          },
        );
        return;
      default:
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve((server.address() as net.AddressInfo).port);
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
