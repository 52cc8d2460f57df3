/**
 * The lean native-gRPC path: serves HTTP/2 streams with content-type
 * application/grpc or application/grpc+proto for the unary and
 * server-streaming methods of the served services, straight on node:http2,
 * calling the same guarded handlers as Connect's adapter. Connect runs every
 * gRPC call through its full streaming pipeline (async generators, several
 * AbortSignals, Headers and a URL per call); this path allocates only what a
 * call uses, for about five times the calls per core.
 *
 * It owns what Connect did for these calls: grpc-timeout deadlines, client
 * cancellation (RST_STREAM) reaching the handler's signal and iterator,
 * status trailers with grpc-status-details-bin, trailers-only errors,
 * message size limits, request decompression (gzip, deflate) bounded by the
 * size limit, and response metadata set by handlers. Responses are never
 * compressed: the service is CPU-bound and its replies small, so compressing
 * them would cost more than it saves on the usual LAN or loopback hop.
 *
 * Not taken here (the caller hands them to Connect): gRPC-Web, +json,
 * any other content type, non-POST requests, and client-streaming or bidi
 * methods (LeaseService.KeepAlive, reflection).
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import zlib from "node:zlib";
import {
  create,
  type DescMessage,
  type DescMethod,
  fromBinary,
  isMessage,
  toBinary,
} from "@bufbuild/protobuf";
import {
  Code,
  type ConnectError,
  type ContextValues,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import type { Logger } from "pino";
import { Gauge, type Registry } from "prom-client";
import { errorWithInfo, toConnectError } from "../api/errors.js";
import type { ServedService } from "../api/routes.js";
import { MAX_TIMER_MS } from "../config.js";
import { Reason } from "../core/errors.js";
import {
  addMetadata,
  errorTrailers,
  frameMessage,
  messagePrefix,
  OK_TRAILERS,
  parseGrpcTimeout,
  RESPONSE_HEADERS,
  trailersOnly,
} from "./grpc-wire.js";

export interface LeanGrpcOptions {
  readonly services: readonly ServedService[];
  /** Largest message either way, after decompression. */
  readonly maxMessageBytes: number;
  /** `ctx.timeoutMs()` never reports more than this. */
  readonly maxDeadlineMs: number;
  readonly logger: Logger;
  /** Where to register the lean path's gauge of open calls. */
  readonly registry?: Registry;
}

export interface LeanGrpc {
  /**
   * Serves `stream` when it is a native gRPC call of a unary or
   * server-streaming method (or of no method: UNIMPLEMENTED); returns false
   * for everything the caller must hand to Connect.
   */
  serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, onClose?: () => void): boolean;
  /** Ends every open call with `error` (shutdown after the grace period). */
  abortAll(error: ConnectError): void;
  /** Calls in progress. */
  readonly active: number;
}

type Invoke = (request: unknown, ctx: HandlerContext) => unknown;

interface Route {
  readonly method: DescMethod;
  readonly input: DescMessage;
  readonly output: DescMessage;
  readonly streaming: boolean;
  readonly invoke: Invoke;
  /**
   * Server streams: the encoded frame of each frozen message yielded. A
   * handler that yields one frozen object to many streams (a watch group's
   * message) has it encoded once; the frame is shared by every write.
   */
  readonly frames: WeakMap<object, Buffer> | undefined;
}

/** A route served by Connect (client-streaming and bidi methods). */
const TO_CONNECT = null;

const LEAN_CONTENT_TYPE = /^application\/grpc(?:\+proto)?$/i;

const RESPOND_OPTIONS = { waitForTrailers: true, sendDate: false } as const;
const TRAILERS_ONLY_OPTIONS = { endStream: true, sendDate: false } as const;

const noop = () => {};
/** Replies at least this large are written as header + message, without a copy. */
const SPLIT_FRAME_BYTES = 64 * 1024;

/** The call a stream carries: stream listeners are shared functions, not per-call closures. */
const CALL = Symbol("latchkey.grpcCall");
type CallStream = ServerHttp2Stream & { [CALL]?: GrpcCall };

function onStreamData(this: CallStream, chunk: Buffer): void {
  this[CALL]?.data(chunk);
}
function onStreamEnd(this: CallStream): void {
  this[CALL]?.end();
}
function onStreamClose(this: CallStream): void {
  this[CALL]?.closed();
}
function onStreamWantTrailers(this: CallStream): void {
  this[CALL]?.wantTrailers();
}
function onDeadline(call: GrpcCall): void {
  call.deadlineReached();
}

/** Builds the lean path over the served services. */
export function createLeanGrpc(options: LeanGrpcOptions): LeanGrpc {
  const routes = new Map<string, Route | typeof TO_CONNECT>();
  for (const { service, impl } of options.services) {
    for (const method of service.methods) {
      const path = `/${service.typeName}/${method.name}`;
      const kind = method.methodKind;
      if (kind !== "unary" && kind !== "server_streaming") {
        routes.set(path, TO_CONNECT);
        continue;
      }
      const handler = (impl as unknown as Record<string, Invoke>)[method.localName];
      if (typeof handler !== "function") continue;
      routes.set(path, {
        method,
        input: method.input,
        output: method.output,
        streaming: kind === "server_streaming",
        invoke: handler,
        frames: kind === "server_streaming" ? new WeakMap() : undefined,
      });
    }
  }

  const shared: Shared = {
    active: new Set(),
    maxMessageBytes: options.maxMessageBytes,
    maxDeadlineMs: options.maxDeadlineMs,
    logger: options.logger,
    log: (error: unknown) => options.logger.error({ err: error }, "grpc call failed"),
  };

  if (options.registry) {
    new Gauge({
      name: "latchkey_grpc_lean_active_calls",
      help: "Native gRPC calls open on the lean path (unary and server streams).",
      registers: [options.registry],
      collect() {
        this.set(shared.active.size);
      },
    });
  }

  return {
    serve(stream, headers, onClose) {
      const contentType = headers["content-type"];
      if (
        contentType !== "application/grpc" &&
        contentType !== "application/grpc+proto" &&
        !(typeof contentType === "string" && LEAN_CONTENT_TYPE.test(contentType))
      ) {
        return false;
      }
      if (headers[":method"] !== "POST") return false;
      const path = headers[":path"] ?? "";
      const route = routes.get(path);
      if (route === TO_CONNECT) return false;
      if (route === undefined) {
        stream.on("error", noop);
        if (onClose) stream.on("close", onClose);
        respondTrailersOnly(
          stream,
          errorWithInfo(Code.Unimplemented, "UNIMPLEMENTED", `unknown method ${path}`),
        );
        return true;
      }
      new GrpcCall(route, stream as CallStream, headers, shared, onClose).start();
      return true;
    },
    abortAll(error) {
      for (const call of [...shared.active]) call.fail(error);
    },
    get active() {
      return shared.active.size;
    },
  };
}

interface Shared {
  readonly active: Set<GrpcCall>;
  readonly maxMessageBytes: number;
  readonly maxDeadlineMs: number;
  readonly logger: Logger;
  readonly log: (error: unknown) => void;
}

function respondTrailersOnly(stream: ServerHttp2Stream, error: ConnectError): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  try {
    stream.respond(trailersOnly(error), TRAILERS_ONLY_OPTIONS);
  } catch {
    stream.close();
  }
}

function protocolError(
  code: Code,
  message: string,
  metadata: Record<string, string> = {},
): ConnectError {
  const reason =
    code === Code.ResourceExhausted
      ? Reason.TOO_LARGE
      : code === Code.DeadlineExceeded
        ? Reason.DEADLINE_EXCEEDED
        : code === Code.InvalidArgument
          ? Reason.INVALID_ARGUMENT
          : code === Code.Unimplemented
            ? "UNIMPLEMENTED"
            : Reason.INTERNAL;
  return errorWithInfo(code, reason, message, metadata);
}

/**
 * One call on the lean path; it is also the handler's HandlerContext, so a
 * call allocates one object. Signal, request headers, response metadata and
 * context values are created only when a handler reads them.
 */
class GrpcCall implements HandlerContext {
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";

  /** Set once the call's outcome is decided: a response, an error or a cancel. */
  private finished = false;
  private chunks: Buffer[] | undefined;
  private first: Buffer | undefined;
  private received = 0;
  private deadline = 0;
  private timer: NodeJS.Timeout | undefined;
  private controller: AbortController | undefined;
  private abortReason: ConnectError | undefined;
  private contextValues: ContextValues | undefined;
  private requestHeaders: Headers | undefined;
  private responseHeaders: Headers | undefined;
  private responseTrailers: Headers | undefined;
  private trailers: Record<string, string | string[]> = OK_TRAILERS;
  private iterator: AsyncIterator<unknown> | undefined;
  private drainWaiter: (() => void) | undefined;

  constructor(
    private readonly route: Route,
    private readonly stream: CallStream,
    private readonly headers: IncomingHttpHeaders,
    private readonly shared: Shared,
    private readonly onClose: (() => void) | undefined,
  ) {}

  // --- HandlerContext -------------------------------------------------------

  get method(): DescMethod {
    return this.route.method;
  }

  get service() {
    return this.route.method.parent;
  }

  get url(): string {
    return `http://${this.headers[":authority"] ?? "localhost"}${this.headers[":path"] ?? ""}`;
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.abortReason !== undefined) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  timeoutMs(): number | undefined {
    if (this.deadline === 0) return undefined;
    return Math.max(0, Math.min(this.deadline - Date.now(), this.shared.maxDeadlineMs));
  }

  get requestHeader(): Headers {
    if (this.requestHeaders === undefined) {
      const headers = new Headers();
      for (const key in this.headers) {
        if (key.charCodeAt(0) === 58 /* ':' */) continue;
        const value = this.headers[key];
        if (value === undefined) continue;
        if (Array.isArray(value)) for (const v of value) headers.append(key, v);
        else headers.set(key, value);
      }
      this.requestHeaders = headers;
    }
    return this.requestHeaders;
  }

  get responseHeader(): Headers {
    this.responseHeaders ??= new Headers();
    return this.responseHeaders;
  }

  get responseTrailer(): Headers {
    this.responseTrailers ??= new Headers();
    return this.responseTrailers;
  }

  get values(): ContextValues {
    this.contextValues ??= createContextValues();
    return this.contextValues;
  }

  // --- the call -------------------------------------------------------------

  start(): void {
    const { stream, headers } = this;
    stream[CALL] = this;
    stream.on("error", noop);
    stream.on("close", onStreamClose);
    this.shared.active.add(this);

    const encoding = headers["grpc-encoding"];
    if (
      encoding !== undefined &&
      encoding !== "identity" &&
      encoding !== "gzip" &&
      encoding !== "deflate"
    ) {
      this.fail(
        protocolError(
          Code.Unimplemented,
          `grpc: compression ${String(encoding)} is not supported (accepted: identity, deflate, gzip)`,
        ),
      );
      return;
    }
    const timeout = parseGrpcTimeout(headers["grpc-timeout"]);
    if (timeout !== undefined) {
      if (Number.isNaN(timeout)) {
        // The client's header is at fault: INVALID_ARGUMENT, as Connect answers it on this port.
        this.fail(
          protocolError(Code.InvalidArgument, "grpc: malformed grpc-timeout", {
            field: "grpc-timeout",
          }),
        );
        return;
      }
      if (timeout === 0) {
        // A zero timeout has expired before the call starts.
        this.fail(protocolError(Code.DeadlineExceeded, "grpc: the deadline had passed on arrival"));
        return;
      }
      // Unary calls are cut at the (capped) deadline; streams run to the
      // client's own deadline (watch streams are exempt from the cap), and
      // one too far off for a Node timer is left to the client.
      const ms = this.route.streaming ? timeout : Math.min(timeout, this.shared.maxDeadlineMs);
      this.deadline = Date.now() + ms;
      if (ms <= MAX_TIMER_MS) this.timer = setTimeout(onDeadline, ms, this);
    }
    stream.on("data", onStreamData);
    stream.on("end", onStreamEnd);
  }

  data(chunk: Buffer): void {
    if (this.finished) return;
    if (this.first === undefined) {
      this.first = chunk;
    } else {
      this.chunks ??= [this.first];
      this.chunks.push(chunk);
    }
    this.received += chunk.length;
    if (this.received >= 5) {
      const length = this.headerLength();
      if (length > this.shared.maxMessageBytes) {
        this.fail(
          protocolError(
            Code.ResourceExhausted,
            `grpc: received message larger than max (${length} vs. ${this.shared.maxMessageBytes})`,
            { limit: String(this.shared.maxMessageBytes) },
          ),
        );
      } else if (this.received > 5 + length) {
        this.fail(
          // A request cardinality violation is UNIMPLEMENTED (gRPC's status code table).
          protocolError(
            Code.Unimplemented,
            "grpc: more than one request message for a non-client-streaming method",
          ),
        );
      }
    }
  }

  /** The length field of the first message header (needs 5 bytes received). */
  private headerLength(): number {
    const first = this.first!;
    if (first.length >= 5) return first.readUInt32BE(1);
    return Buffer.concat(this.chunks!, this.received).readUInt32BE(1);
  }

  end(): void {
    if (this.finished) return;
    if (this.received === 0) {
      this.fail(
        protocolError(
          Code.Unimplemented,
          "grpc: no request message for a non-client-streaming method",
        ),
      );
      return;
    }
    const body =
      this.chunks === undefined ? this.first! : Buffer.concat(this.chunks, this.received);
    this.first = undefined;
    this.chunks = undefined;
    if (body.length < 5) {
      this.fail(protocolError(Code.Internal, "grpc: truncated message header"));
      return;
    }
    const flags = body[0]!;
    const length = body.readUInt32BE(1);
    if (body.length < 5 + length) {
      this.fail(
        protocolError(
          Code.Internal,
          `grpc: truncated message (${body.length - 5} of ${length} bytes)`,
        ),
      );
      return;
    }
    const payload = body.subarray(5, 5 + length);
    if (flags === 0) {
      this.decode(payload);
      return;
    }
    if (flags !== 1) {
      this.fail(protocolError(Code.Internal, `grpc: invalid message flags ${flags}`));
      return;
    }
    const encoding = this.headers["grpc-encoding"];
    if (encoding !== "gzip" && encoding !== "deflate") {
      this.fail(
        protocolError(Code.Internal, "grpc: compressed flag set with identity or empty encoding"),
      );
      return;
    }
    const inflate = encoding === "gzip" ? zlib.gunzip : zlib.inflate;
    inflate(payload, { maxOutputLength: this.shared.maxMessageBytes }, (error, plain) => {
      if (this.finished) return;
      if (error) {
        this.fail(
          (error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE"
            ? protocolError(
                Code.ResourceExhausted,
                `grpc: decompressed message larger than max (${this.shared.maxMessageBytes})`,
                { limit: String(this.shared.maxMessageBytes) },
              )
            : protocolError(Code.Internal, "grpc: failed to decompress the request message"),
        );
        return;
      }
      this.decode(plain);
    });
  }

  private decode(payload: Uint8Array): void {
    let request: unknown;
    try {
      request = fromBinary(this.route.input, payload);
    } catch {
      // The client's bytes are at fault, not the server: INVALID_ARGUMENT (never INTERNAL).
      this.fail(
        protocolError(
          Code.InvalidArgument,
          `the request is not a valid ${this.route.input.typeName} message`,
        ),
      );
      return;
    }
    let result: unknown;
    try {
      result = this.route.invoke(request, this);
    } catch (error) {
      this.failWith(error);
      return;
    }
    if (this.route.streaming) {
      void this.pump(result as AsyncIterable<unknown>);
    } else if (result !== null && typeof (result as Promise<unknown>).then === "function") {
      (result as Promise<unknown>).then(
        (value) => this.result(value),
        (error: unknown) => this.failWith(error),
      );
    } else {
      this.result(result);
    }
  }

  private result(value: unknown): void {
    if (this.finished) return;
    let message: Uint8Array;
    try {
      message = this.serialize(value);
    } catch (error) {
      this.failWith(error);
      return;
    }
    this.finished = true;
    this.settle();
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    if (!this.sendHeaders()) return;
    this.prepareTrailers();
    if (message.byteLength < SPLIT_FRAME_BYTES) {
      stream.end(frameMessage(message));
    } else {
      // A large reply (a snapshot state) goes out behind its own header
      // rather than copied once more into a framed buffer: fewer MiB-sized
      // allocations, fewer full garbage collections.
      stream.write(messagePrefix(message.byteLength));
      stream.end(message);
    }
    this.completeSignal();
  }

  private failWith(error: unknown): void {
    if (this.finished) return;
    this.fail(toConnectError(error, this.shared.log));
  }

  /** Serializes a handler's reply; fails RESOURCE_EXHAUSTED above the size limit. */
  private serialize(value: unknown): Uint8Array {
    const output = this.route.output;
    const message = isMessage(value, output) ? value : create(output, value as never);
    const bytes = toBinary(output, message);
    if (bytes.byteLength > this.shared.maxMessageBytes) {
      throw protocolError(
        Code.ResourceExhausted,
        `grpc: response message larger than max (${bytes.byteLength} vs. ${this.shared.maxMessageBytes})`,
        { limit: String(this.shared.maxMessageBytes) },
      );
    }
    return bytes;
  }

  private encode(value: unknown): Buffer {
    return frameMessage(this.serialize(value));
  }

  /**
   * A streamed message's frame: encoded once per frozen message object (a
   * frozen message is immutable, so its bytes never change), per write otherwise.
   */
  private frameOf(value: unknown): Buffer {
    const frames = this.route.frames;
    if (
      frames === undefined ||
      typeof value !== "object" ||
      value === null ||
      !Object.isFrozen(value)
    ) {
      return this.encode(value);
    }
    let frame = frames.get(value);
    if (frame === undefined) {
      frame = this.encode(value);
      frames.set(value, frame);
    }
    return frame;
  }

  /** Sends the response headers (with the handler's metadata); false if the stream is gone. */
  private sendHeaders(): boolean {
    const stream = this.stream;
    if (stream.headersSent) return true;
    let headers: Readonly<Record<string, string | string[] | number>> = RESPONSE_HEADERS;
    if (this.responseHeaders !== undefined) {
      const merged = { ...RESPONSE_HEADERS };
      addMetadata(merged, this.responseHeaders);
      headers = merged;
    }
    try {
      stream.respond(headers, RESPOND_OPTIONS);
      stream.on("wantTrailers", onStreamWantTrailers);
      return true;
    } catch (error) {
      // Invalid metadata from a handler, or the stream closed under us.
      this.shared.logger.debug({ err: error }, "grpc response headers not sent");
      if (!stream.destroyed && !stream.closed && !stream.headersSent) {
        respondTrailersOnly(stream, protocolError(Code.Internal, "internal error"));
      }
      return false;
    }
  }

  private prepareTrailers(): void {
    if (this.responseTrailers !== undefined) {
      const merged: Record<string, string | string[]> = {};
      addMetadata(merged, this.responseTrailers);
      merged["grpc-status"] = "0";
      this.trailers = merged;
    }
  }

  wantTrailers(): void {
    try {
      this.stream.sendTrailers(this.trailers);
    } catch {
      this.stream.close();
    }
  }

  /** Server streaming: writes each message as it comes, honouring backpressure. */
  private async pump(iterable: AsyncIterable<unknown>): Promise<void> {
    try {
      const iterator = iterable[Symbol.asyncIterator]();
      this.iterator = iterator;
      for (;;) {
        const next = await iterator.next();
        if (this.finished) return;
        if (next.done) break;
        const frame = this.frameOf(next.value);
        if (!this.sendHeaders()) {
          this.cancel();
          return;
        }
        if (!this.stream.write(frame)) {
          await new Promise<void>((resolve) => {
            this.drainWaiter = resolve;
            this.stream.once("drain", resolve);
          });
          this.drainWaiter = undefined;
          if (this.finished) return;
        }
      }
      this.finished = true;
      this.settle();
      const stream = this.stream;
      if (stream.destroyed || stream.closed) return;
      if (!stream.headersSent) {
        if (!this.sendHeaders()) return;
      }
      this.prepareTrailers();
      stream.end();
      this.completeSignal();
    } catch (error) {
      this.failWith(error);
    }
  }

  /** Ends the call with an error status (trailers-only if nothing was sent yet). */
  fail(error: ConnectError): void {
    if (this.finished) return;
    this.finished = true;
    this.settle();
    this.abort(error);
    this.stopIterator();
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    if (!stream.headersSent) {
      if (this.responseHeaders !== undefined || this.responseTrailers !== undefined) {
        // Trailers-only, with the metadata the handler had set.
        const merged: Record<string, string | string[] | number> = { ...RESPONSE_HEADERS };
        if (this.responseHeaders) addMetadata(merged, this.responseHeaders);
        if (this.responseTrailers) addMetadata(merged, this.responseTrailers);
        Object.assign(merged, errorTrailers(error));
        try {
          stream.respond(merged, TRAILERS_ONLY_OPTIONS);
        } catch {
          respondTrailersOnly(stream, error);
        }
      } else {
        respondTrailersOnly(stream, error);
      }
    } else {
      const trailers: Record<string, string | string[]> = {};
      if (this.responseTrailers) addMetadata(trailers, this.responseTrailers);
      this.trailers = Object.assign(trailers, errorTrailers(error));
      stream.end();
    }
    this.closeUnread();
  }

  /**
   * After an early error the client may still be sending: reset the stream
   * (NO_ERROR, as grpc-go does) once our response has been flushed, so an
   * oversized upload stops instead of filling the window.
   */
  private closeUnread(): void {
    const stream = this.stream;
    if (stream.readableEnded) return;
    stream.off("data", onStreamData);
    stream.resume();
    setImmediate(() => {
      if (!stream.destroyed && !stream.closed && !stream.readableEnded) stream.close();
    });
  }

  deadlineReached(): void {
    this.timer = undefined;
    if (this.finished) return;
    this.fail(protocolError(Code.DeadlineExceeded, "deadline exceeded"));
  }

  /** The client went away (RST_STREAM or connection loss) or the stream ended. */
  closed(): void {
    this.onClose?.();
    this.shared.active.delete(this);
    if (this.drainWaiter) this.drainWaiter();
    if (!this.finished) this.cancel();
  }

  private cancel(): void {
    this.finished = true;
    this.settle();
    this.abort(protocolError(Code.Canceled, "the client cancelled the call"));
    this.stopIterator();
  }

  /** The call's outcome is decided: stop the deadline and leave the open-call set. */
  private settle(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.shared.active.delete(this);
  }

  private abort(reason: ConnectError): void {
    if (this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  /** A finished call aborts its signal too (as Connect does), so downstream work stops. */
  private completeSignal(): void {
    if (this.controller !== undefined && this.abortReason === undefined) {
      this.abort(protocolError(Code.Canceled, "call completed"));
    }
  }

  private stopIterator(): void {
    const iterator = this.iterator;
    if (iterator?.return === undefined) return;
    this.iterator = undefined;
    iterator.return().catch(noop);
  }
}
