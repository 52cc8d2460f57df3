/**
 * The API listener: one port for every protocol. Cleartext: each accepted
 * socket's first bytes decide (the HTTP/2 preface starts "PRI ") between an
 * h2c server and an HTTP/1.1 server, since Node ignores allowHTTP1 without
 * TLS. TLS: one http2 secure server with allowHTTP1 (ALPN decides). HTTP/2
 * streams go to the lean gRPC path when it takes them and to Connect's
 * adapter otherwise; HTTP/1.1 requests go to Connect.
 *
 * It also owns connection hygiene (handshake and idle timeouts, keepalive
 * PINGs, header and session limits) and the graceful drain: stop accepting,
 * GOAWAY every HTTP/2 session, close HTTP/1.1 keep-alive connections, let
 * open calls finish for the grace period, then cut what is left.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type tls from "node:tls";
import type { Logger } from "pino";
import type { Config, ServerSettings } from "../config.js";
import type { LeanGrpc } from "./grpc-lean.js";

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface ApiListenerOptions {
  readonly settings: ServerSettings;
  readonly tls: Config["tls"];
  readonly logger: Logger;
  /** Connect's adapter (connectNodeAdapter). */
  readonly handler: RequestHandler;
  /** The lean gRPC path; undefined sends every stream to Connect. */
  readonly lean: LeanGrpc | undefined;
}

export interface ApiListener {
  /** Listens; resolves with the bound port. */
  listen(port: number, host: string): Promise<number>;
  /**
   * Drains: stops accepting, sends GOAWAY on every HTTP/2 session, closes
   * idle HTTP/1.1 connections (and busy ones after their response), waits
   * up to `graceMs` for open calls, then calls `cutCalls` (which should end
   * the remaining calls with UNAVAILABLE) and destroys whatever is still open.
   */
  drain(graceMs: number, cutCalls: () => void): Promise<void>;
  /** Open connections (HTTP/2 sessions and HTTP/1.1 sockets), for tests and metrics. */
  readonly connections: number;
}

interface SessionState {
  open: number;
  /** Until the first stream: a session that opens none in time is closed (slowloris). */
  firstRequest: NodeJS.Timeout | undefined;
  idleSince: number;
  lastPing: number;
  pinging: boolean;
  readonly onStreamClose: () => void;
}

interface Http1State {
  active: number;
}

type StreamListener = (
  this: unknown,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  flags: number,
  rawHeaders: string[],
) => void;

/** How long cut calls get to flush their UNAVAILABLE trailers before sockets are destroyed. */
const CUT_FLUSH_MS = 1000;

export function createApiListener(options: ApiListenerOptions): ApiListener {
  const { settings, logger, lean } = options;
  const sessions = new Map<http2.ServerHttp2Session, SessionState>();
  const http1Sockets = new Map<net.Socket, Http1State>();
  const sniffing = new Set<net.Socket>();
  let draining = false;
  let sweeper: NodeJS.Timeout | undefined;
  let onConnectionsClosed: (() => void) | undefined;

  const checkClosed = () => {
    if (onConnectionsClosed && sessions.size === 0 && http1Sockets.size === 0) {
      onConnectionsClosed();
    }
  };

  // HTTP/1.1 requests (cleartext, or TLS without h2 in ALPN) go to Connect;
  // while draining they are answered with `connection: close`.
  const onRequest: RequestHandler = (req, res) => {
    if (req.httpVersionMajor === 1) {
      const socket = req.socket as net.Socket;
      const state = http1Sockets.get(socket);
      if (state) {
        state.active++;
        res.once("close", () => {
          state.active--;
          if (draining && state.active === 0) socket.destroySoon();
        });
      }
      if (draining && !res.headersSent) res.setHeader("connection", "close");
    }
    options.handler(req, res);
  };

  const h2Options: http2.ServerOptions = {
    settings: {
      maxConcurrentStreams: settings.maxConcurrentStreams,
      maxHeaderListSize: settings.maxHeaderListBytes,
      enablePush: false,
    },
    maxHeaderListPairs: settings.maxHeaderListPairs,
    maxSessionMemory: settings.maxSessionMemoryMb,
    unknownProtocolTimeout: settings.handshakeTimeoutMs,
  };

  const secure = options.tls;
  const h2: http2.Http2Server | http2.Http2SecureServer = secure
    ? http2.createSecureServer(
        {
          ...h2Options,
          allowHTTP1: true,
          cert: readFileSync(secure.cert),
          key: readFileSync(secure.key),
          ...(secure.ca !== undefined
            ? { ca: readFileSync(secure.ca), requestCert: true, rejectUnauthorized: true }
            : {}),
          minVersion: "TLSv1.2",
          handshakeTimeout: settings.handshakeTimeoutMs,
        },
        onRequest,
      )
    : http2.createServer(h2Options, onRequest);

  // Route each stream: the lean gRPC path first, Connect's compat listener
  // (installed by http2 for the 'request' handler) for everything else.
  const connectListeners = h2.listeners("stream") as StreamListener[];
  h2.removeAllListeners("stream");
  h2.on("stream", function dispatch(this: unknown, stream, headers, flags, rawHeaders) {
    const state = sessions.get(stream.session as http2.ServerHttp2Session);
    if (state !== undefined) {
      state.open++;
      if (state.firstRequest !== undefined) {
        clearTimeout(state.firstRequest);
        state.firstRequest = undefined;
      }
    }
    if (lean?.serve(stream, headers, state?.onStreamClose)) return;
    if (state !== undefined) stream.on("close", state.onStreamClose);
    for (const listener of connectListeners)
      listener.call(this, stream, headers, flags, rawHeaders);
  } as StreamListener);

  h2.on("session", (session: http2.ServerHttp2Session) => {
    const state: SessionState = {
      open: 0,
      // The sniff (or the TLS handshake) only saw the first bytes: the peer
      // must also finish the preface and send a request within the handshake
      // timeout, or it gets GOAWAY (and is cut if it does not go).
      firstRequest: setTimeout(() => {
        if (session.closed || session.destroyed) return;
        logger.debug("no request within the handshake timeout: closing the connection");
        session.close();
        setTimeout(() => session.destroy(), CUT_FLUSH_MS).unref();
      }, settings.handshakeTimeoutMs).unref(),
      idleSince: Date.now(),
      lastPing: Date.now(),
      pinging: false,
      onStreamClose: () => {
        if (--state.open === 0) state.idleSince = Date.now();
      },
    };
    sessions.set(session, state);
    session.once("close", () => {
      clearTimeout(state.firstRequest);
      sessions.delete(session);
      checkClosed();
    });
    if (draining) session.close();
  });
  h2.on("sessionError", (error: Error) => logger.debug({ err: error }, "http2 session error"));

  // HTTP/1.1 limits: header size, header and keep-alive timeouts.
  const http1Settings = (server: http.Server | http2.Http2SecureServer) => {
    // http.Server's fields, which http2's allowHTTP1 fallback reads from its server too.
    const s = server as http.Server & {
      connectionsCheckingInterval: number;
      maxHeaderSize: number;
    };
    s.keepAliveTimeout = settings.idleTimeoutMs;
    s.headersTimeout = settings.handshakeTimeoutMs;
    s.requestTimeout = Math.max(settings.handshakeTimeoutMs, 300_000);
    s.connectionsCheckingInterval = Math.min(
      30_000,
      Math.max(500, settings.handshakeTimeoutMs / 4),
    );
    s.maxHeaderSize = settings.maxHeaderListBytes;
    s.maxHeadersCount = settings.maxHeaderListPairs;
  };

  let h1: http.Server | undefined;
  let front: net.Server;

  const trackHttp1 = (socket: net.Socket) => {
    const state: Http1State = { active: 0 };
    http1Sockets.set(socket, state);
    socket.once("close", () => {
      http1Sockets.delete(socket);
      checkClosed();
    });
  };

  if (secure) {
    http1Settings(h2 as http2.Http2SecureServer);
    h2.on("secureConnection", (socket: tls.TLSSocket) => {
      if (socket.alpnProtocol !== "h2") trackHttp1(socket);
    });
    h2.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
      logger.debug({ err: error }, "tls handshake failed");
      socket.destroy();
    });
    front = h2 as http2.Http2SecureServer;
  } else {
    const server = http.createServer(
      { maxHeaderSize: settings.maxHeaderListBytes, noDelay: true },
      onRequest as http.RequestListener,
    );
    http1Settings(server);
    h1 = server;
    const h2c = h2;
    front = net.createServer({ noDelay: true }, (socket) => {
      sniffing.add(socket);
      const done = () => {
        sniffing.delete(socket);
        socket.off("readable", onReadable);
        socket.off("timeout", onTimeout);
        socket.off("error", onError);
        socket.off("end", onEnd);
        socket.setTimeout(0);
      };
      const onTimeout = () => {
        done();
        socket.destroy();
      };
      const onError = (error: Error) => {
        logger.debug({ err: error }, "connection failed before its first bytes");
        done();
        socket.destroy();
      };
      const onEnd = () => {
        done();
        socket.destroy();
      };
      const onReadable = () => {
        // read(4) returns null until 4 bytes are buffered (or the peer ended).
        const head = socket.read(4) as Buffer | null;
        if (head === null) return;
        done();
        if (head.length < 4 || draining) {
          socket.destroy();
          return;
        }
        socket.unshift(head);
        if (head.toString("latin1") === "PRI ") {
          h2c.emit("connection", socket);
        } else {
          trackHttp1(socket);
          server.emit("connection", socket);
        }
      };
      socket.setTimeout(settings.handshakeTimeoutMs);
      socket.on("timeout", onTimeout);
      socket.on("error", onError);
      socket.on("end", onEnd);
      socket.on("readable", onReadable);
    });
    // The HTTP/1.1 server never listens itself (sockets are handed to it), so
    // start its connection checks (headers and request timeouts) by hand.
    server.emit("listening");
  }

  // Idle sessions and keepalive PINGs, checked a few times per period.
  const sweep = () => {
    const now = Date.now();
    for (const [session, state] of sessions) {
      if (session.closed || session.destroyed) continue;
      if (state.open === 0 && now - state.idleSince >= settings.idleTimeoutMs) {
        session.close();
        continue;
      }
      if (
        settings.keepaliveTimeMs > 0 &&
        !state.pinging &&
        now - state.lastPing >= settings.keepaliveTimeMs
      ) {
        state.pinging = true;
        const timer = setTimeout(() => {
          logger.debug("keepalive ping unanswered: closing the connection");
          session.destroy();
        }, settings.keepaliveTimeoutMs);
        timer.unref();
        const sent = session.ping((error) => {
          clearTimeout(timer);
          state.pinging = false;
          state.lastPing = Date.now();
          if (error && !session.destroyed) session.destroy();
        });
        if (!sent) {
          clearTimeout(timer);
          state.pinging = false;
          state.lastPing = now;
        }
      }
    }
  };
  const sweepEvery = Math.max(
    100,
    Math.min(
      settings.idleTimeoutMs / 4,
      settings.keepaliveTimeMs > 0 ? settings.keepaliveTimeMs / 4 : Number.POSITIVE_INFINITY,
      5_000,
    ),
  );

  const destroyAll = () => {
    for (const socket of sniffing) socket.destroy();
    for (const session of sessions.keys()) session.destroy();
    for (const socket of http1Sockets.keys()) socket.destroy();
  };

  const waitClosed = (ms: number) =>
    new Promise<boolean>((resolve) => {
      if (sessions.size === 0 && http1Sockets.size === 0) {
        resolve(true);
        return;
      }
      const timer = setTimeout(() => {
        onConnectionsClosed = undefined;
        resolve(false);
      }, ms);
      onConnectionsClosed = () => {
        clearTimeout(timer);
        onConnectionsClosed = undefined;
        resolve(true);
      };
    });

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        front.once("error", reject);
        front.listen(port, host, () => {
          front.off("error", reject);
          front.on("error", (error) => logger.error({ err: error }, "api listener error"));
          sweeper = setInterval(sweep, sweepEvery);
          sweeper.unref();
          resolve((front.address() as net.AddressInfo).port);
        });
      });
    },

    async drain(graceMs, cutCalls) {
      draining = true;
      front.close();
      for (const socket of sniffing) socket.destroy();
      sniffing.clear();
      for (const session of sessions.keys()) if (!session.closed) session.close();
      for (const [socket, state] of http1Sockets) if (state.active === 0) socket.destroySoon();
      const clean = await waitClosed(graceMs);
      if (!clean) {
        cutCalls();
        if (!(await waitClosed(CUT_FLUSH_MS))) destroyAll();
      }
      if (sweeper) clearInterval(sweeper);
      h1?.close();
    },

    get connections() {
      return sessions.size + http1Sockets.size;
    },
  };
}
