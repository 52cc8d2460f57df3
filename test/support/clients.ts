/**
 * Connect-ES clients for tests, one per protocol, each with its own HTTP/2
 * session that `close()` tears down (idle sessions otherwise hang the run).
 */
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";

export type Protocol = "grpc" | "grpc-web" | "connect" | "connect-http1";

export interface Clients {
  transport: Transport;
  client<S extends DescService>(service: S): Client<S>;
  close(): void;
}

/** Clients over `protocol` to a server at `baseUrl`, with optional extra headers. */
export function connectClients(
  baseUrl: string,
  protocol: Protocol = "grpc",
  headers?: Record<string, string>,
): Clients {
  const sessions = protocol === "connect-http1" ? undefined : new Http2SessionManager(baseUrl);
  const interceptors = headers
    ? [
        (next: Parameters<import("@connectrpc/connect").Interceptor>[0]) =>
          async (req: Parameters<typeof next>[0]) => {
            for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
            return next(req);
          },
      ]
    : [];
  let transport: Transport;
  switch (protocol) {
    case "grpc":
      transport = createGrpcTransport({ baseUrl, sessionManager: sessions!, interceptors });
      break;
    case "grpc-web":
      transport = createGrpcWebTransport({
        baseUrl,
        httpVersion: "2",
        sessionManager: sessions!,
        interceptors,
      });
      break;
    case "connect":
      transport = createConnectTransport({
        baseUrl,
        httpVersion: "2",
        sessionManager: sessions!,
        interceptors,
      });
      break;
    case "connect-http1":
      transport = createConnectTransport({
        baseUrl,
        httpVersion: "1.1",
        useBinaryFormat: false,
        interceptors,
      });
      break;
  }
  return {
    transport,
    client: (service) => createClient(service, transport),
    close: () => sessions?.abort(),
  };
}
