/**
 * gRPC on the wire, for the benchmark: request bodies (the 5-byte frame
 * around a protobuf message, encoded with @bufbuild/protobuf and the
 * generated schemas), one-off unary calls over node:http2 to validate a body
 * before h2load repeats it, and an incremental frame splitter for streams.
 */
import { writeFileSync } from "node:fs";
import http2 from "node:http2";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";

/** Prefixes a serialized message with gRPC's frame header (uncompressed, big-endian length). */
export function grpcFrame(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(5 + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}

/** Encodes a message with its generated schema and frames it. */
export function encodeFramed<Desc extends DescMessage>(
  schema: Desc,
  init: MessageInitShape<Desc>,
): Buffer {
  return grpcFrame(toBinary(schema, create(schema, init)));
}

/** Writes a framed request body for h2load's -d. */
export function writeBody(path: string, body: Buffer): string {
  writeFileSync(path, body);
  return path;
}

export interface UnaryResult {
  readonly httpStatus: number;
  readonly grpcStatus: number;
  readonly grpcMessage: string;
  /** The response message (unframed), empty when there is none. */
  readonly message: Buffer;
}

/** One unary call with a pre-framed body; resolves with status and the response message. */
export async function unaryCall(
  baseUrl: string,
  path: string,
  framedBody: Buffer,
  timeoutMs = 10_000,
): Promise<UnaryResult> {
  const session = http2.connect(baseUrl);
  session.on("error", () => {});
  try {
    return await new Promise<UnaryResult>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${path}: no answer in ${timeoutMs} ms`)),
        timeoutMs,
      );
      const stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
      });
      let httpStatus = 0;
      let grpcStatus = -1;
      let grpcMessage = "";
      const chunks: Buffer[] = [];
      const readStatus = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) grpcStatus = Number(h["grpc-status"]);
        if (typeof h["grpc-message"] === "string")
          grpcMessage = decodeURIComponent(h["grpc-message"]);
      };
      stream.on("response", (h) => {
        httpStatus = Number(h[":status"]);
        readStatus(h);
      });
      stream.on("trailers", readStatus);
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      stream.on("close", () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks);
        const message =
          body.length >= 5 ? body.subarray(5, 5 + body.readUInt32BE(1)) : Buffer.alloc(0);
        resolve({ httpStatus, grpcStatus, grpcMessage, message });
      });
      stream.end(framedBody);
    });
  } finally {
    session.close();
  }
}

/** Splits a byte stream into gRPC messages (ignores the compressed flag: the server never compresses). */
export class FrameSplitter {
  private pending: Buffer | undefined;

  /** Calls `onMessage` for every complete message in the data seen so far. */
  push(chunk: Buffer, onMessage: (message: Buffer) => void): void {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    let offset = 0;
    while (buf.length - offset >= 5) {
      const length = buf.readUInt32BE(offset + 1);
      if (buf.length - offset - 5 < length) break;
      onMessage(buf.subarray(offset + 5, offset + 5 + length));
      offset += 5 + length;
    }
    this.pending = offset === buf.length ? undefined : buf.subarray(offset);
    buf = Buffer.alloc(0);
  }
}

/**
 * A minimal protobuf reader for the few fields the benchmark inspects on hot
 * paths (watch events, etcd answers): no allocation per field.
 */
export class WireReader {
  pos: number;
  end: number;
  constructor(
    readonly buf: Uint8Array,
    start = 0,
    end = buf.length,
  ) {
    this.pos = start;
    this.end = end;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let result = 0;
    let shift = 1;
    // A varint is at most 10 bytes; a truncated or corrupt one must not spin.
    for (let i = 0; i < 10 && this.pos < this.end; i++) {
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * shift;
      if (b < 0x80) return result;
      shift *= 128;
    }
    throw new Error("truncated or malformed varint");
  }

  /** Reads a tag: [field number, wire type]. */
  tag(): [number, number] {
    const t = this.varint();
    return [Math.floor(t / 8), t & 7];
  }

  /** Length-delimited field: returns [start, end) and moves past it. */
  bytes(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    if (start + length > this.end) throw new Error("length-delimited field overruns the message");
    this.pos += length;
    return [start, this.pos];
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        return;
      case 2:
        this.bytes();
        return;
      case 5:
        this.pos += 4;
        return;
      default:
        throw new Error(`wire type ${wireType} not supported`);
    }
  }
}

/** Reads int64 field `field` of the sub-message `outer` (e.g. header.revision): 0 when absent. */
export function readNestedVarint(message: Uint8Array, outer: number, field: number): number {
  const r = new WireReader(message);
  while (!r.done) {
    const [no, type] = r.tag();
    if (no === outer && type === 2) {
      const [start, end] = r.bytes();
      const inner = new WireReader(message, start, end);
      while (!inner.done) {
        const [n, t] = inner.tag();
        if (n === field && t === 0) return inner.varint();
        inner.skip(t);
      }
    } else r.skip(type);
  }
  return 0;
}

/** Top-level varint field of a message (0 when absent). */
export function readVarint(message: Uint8Array, field: number): number {
  const r = new WireReader(message);
  while (!r.done) {
    const [no, type] = r.tag();
    if (no === field && type === 0) return r.varint();
    r.skip(type);
  }
  return 0;
}
