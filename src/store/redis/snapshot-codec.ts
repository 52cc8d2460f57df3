/**
 * Decoding of snapshot metadata as the snapshot scripts write it (lib/snapshot
 * meta_reply), shared by script replies (ioredis Buffers, null for Lua false)
 * and changefeed details (msgpack raw strings, false):
 *   [id, sequence, contentType, status, metadata, createAt, updateAt,
 *    expireAt (0 = never), eventSeq, stateSize, encoding, suspension | false]
 * with suspension = [reason, data, suspendAt, expireAt (0 = never)] and
 * metadata a msgpack flat array [k1, v1, k2, v2, ...] ('' = none).
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import type { ExecutionStatus, SnapshotMeta } from "../../core/model.js";
import type { StateEncoding } from "../../core/ports.js";

const STATUSES: ReadonlySet<string> = new Set<ExecutionStatus>([
  "pending",
  "running",
  "suspended",
  "completed",
  "failed",
  "cancelled",
]);
const utf8 = new TextDecoder();
const metadataDecoder = new Decoder();
const metadataEncoder = new Encoder();

/** A malformed value: the caller maps it to INTERNAL (a bug or a foreign writer). */
export class SnapshotDecodeError extends Error {
  override readonly name = "SnapshotDecodeError";
}

export function bytesOf(value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return new TextEncoder().encode(value);
  throw new SnapshotDecodeError(`${what} is not a byte string`);
}

export function textOf(value: unknown, what: string): string {
  return typeof value === "string" ? value : utf8.decode(bytesOf(value, what));
}

export function intOf(value: unknown, what: string): number {
  if (typeof value === "number" && Number.isSafeInteger(value)) return value;
  if (typeof value === "bigint") return Number(value);
  throw new SnapshotDecodeError(`${what} is not an integer`);
}

export function statusOf(value: unknown): ExecutionStatus {
  const status = textOf(value, "status");
  if (!STATUSES.has(status)) throw new SnapshotDecodeError(`unknown status ${status}`);
  return status as ExecutionStatus;
}

/** Metadata packed for the scripts: a msgpack flat array of keys and values. */
export function packMetadata(metadata: Readonly<Record<string, string>>): Uint8Array {
  const flat = Object.entries(metadata).flat();
  return flat.length === 0 ? new Uint8Array(0) : metadataEncoder.encode(flat);
}

function unpackMetadata(packed: Uint8Array): Record<string, string> {
  const metadata: Record<string, string> = {};
  if (packed.length === 0) return metadata;
  const flat = metadataDecoder.decode(packed);
  if (!Array.isArray(flat)) throw new SnapshotDecodeError("metadata is not an array");
  for (let i = 0; i + 1 < flat.length; i += 2) {
    Object.defineProperty(metadata, String(flat[i]), {
      value: String(flat[i + 1]),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return metadata;
}

/** Decodes a meta_reply that starts at `raw[at]`; also returns the stored encoding. */
export function decodeSnapshotMeta(
  raw: readonly unknown[],
  at = 0,
): { meta: SnapshotMeta; encoding: StateEncoding } {
  if (raw.length < at + 12) throw new SnapshotDecodeError("malformed snapshot metadata");
  const expireAt = intOf(raw[at + 7], "expireAt");
  const s = raw[at + 11];
  let suspension: SnapshotMeta["suspension"];
  if (Array.isArray(s)) {
    const tokenExpireAt = intOf(s[3], "suspension expireAt");
    suspension = {
      reason: textOf(s[0], "suspension reason"),
      data: new Uint8Array(bytesOf(s[1], "suspension data")),
      suspendAt: intOf(s[2], "suspendAt"),
      expireAt: tokenExpireAt === 0 ? undefined : tokenExpireAt,
    };
  } else if (s !== false && s !== null) {
    throw new SnapshotDecodeError("malformed suspension");
  }
  const encoding = textOf(raw[at + 10], "encoding");
  if (encoding !== "identity" && encoding !== "br") {
    throw new SnapshotDecodeError(`unknown state encoding ${encoding}`);
  }
  return {
    encoding,
    meta: {
      executionId: textOf(raw[at], "execution id"),
      sequence: intOf(raw[at + 1], "sequence"),
      contentType: textOf(raw[at + 2], "content type"),
      status: statusOf(raw[at + 3]),
      metadata: unpackMetadata(bytesOf(raw[at + 4], "metadata")),
      createAt: intOf(raw[at + 5], "createAt"),
      updateAt: intOf(raw[at + 6], "updateAt"),
      expireAt: expireAt === 0 ? undefined : expireAt,
      eventSeq: intOf(raw[at + 8], "eventSeq"),
      stateSize: intOf(raw[at + 9], "stateSize"),
      suspension,
    },
  };
}
