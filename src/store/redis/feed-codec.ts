/**
 * Decodes changefeed stream entries written by the Lua scripts. An entry's
 * id is `<revision>-0`; its field `e` holds the revision's events packed by
 * Lua cmsgpack as an array of
 *   [kind, key, value, create, mod, version, lease, expireAt (0 = none), prev, details?]
 * where prev is false or [value, create, mod, version, lease, expireAt].
 *
 * details (the 10th element) is absent on key events (put, delete, expire).
 * Other events carry it as an array whose first element names its layout,
 * and the rest is positional in that layout:
 *   ["lock", name, owner, fencingToken, acquireAt, expireAt, leaseId]
 *       lock_acquired, lock_released, lock_expired (ChangeEvent.lock); the
 *       event's key is /locks/<name> at the event revision, as a tombstone
 *   ["snapshot", id, sequence, contentType, status, metadata, createAt,
 *    updateAt, expireAt, eventSeq, stateSize, encoding, suspension | false]
 *       snapshot_saved, snapshot_deleted, execution_suspended,
 *       execution_resumed (ChangeEvent.snapshot; see snapshot-codec.ts); the
 *       event's key is /snapshots/<id> at the event revision, as a tombstone
 * New layouts add a tag and a case in `decodeDetails`; an unknown tag fails
 * to decode (a newer writer).
 *
 * Lua strings are msgpack str (raw bytes, not necessarily UTF-8), so they
 * are decoded raw and only keys, names and owners are read as UTF-8.
 */
import { Decoder } from "@msgpack/msgpack";
import type { ChangeEvent, EventKind, FeedEntry, KeyValue, LockInfo } from "../../core/model.js";
import { decodeSnapshotMeta } from "./snapshot-codec.js";

const decoder = new Decoder({ rawStrings: true });
const utf8 = new TextDecoder();

const KINDS: ReadonlySet<string> = new Set<EventKind>([
  "put",
  "delete",
  "expire",
  "snapshot_saved",
  "snapshot_deleted",
  "execution_suspended",
  "execution_resumed",
  "lock_acquired",
  "lock_released",
  "lock_expired",
]);

/** Thrown for an entry this version cannot read (a bug or a foreign writer). */
export class FeedDecodeError extends Error {
  override readonly name = "FeedDecodeError";
}

function bytes(value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  throw new FeedDecodeError(`${what} is not a byte string`);
}

function int(value: unknown, what: string): number {
  if (typeof value === "number" && Number.isInteger(value)) return value;
  if (typeof value === "bigint") return Number(value);
  throw new FeedDecodeError(`${what} is not an integer`);
}

function keyValue(key: string, fields: readonly unknown[], at: number): KeyValue {
  const expireAt = int(fields[at + 5], "expireAt");
  return {
    key,
    // A plain copy: not a view into the packed entry, and not a Buffer.
    value: new Uint8Array(bytes(fields[at], "value")),
    createRevision: int(fields[at + 1], "create"),
    modRevision: int(fields[at + 2], "mod"),
    version: int(fields[at + 3], "version"),
    leaseId: int(fields[at + 4], "lease"),
    expireAt: expireAt === 0 ? undefined : expireAt,
  };
}

function text(value: unknown, what: string): string {
  return utf8.decode(bytes(value, what));
}

/** The details of a non-key event (see the layouts above). */
function decodeDetails(raw: unknown): { lock: LockInfo } | Pick<ChangeEvent, "snapshot"> {
  if (!Array.isArray(raw) || raw.length < 1) throw new FeedDecodeError("malformed details");
  const tag = text(raw[0], "details tag");
  switch (tag) {
    case "lock": {
      if (raw.length < 7) throw new FeedDecodeError("malformed lock details");
      return {
        lock: {
          name: text(raw[1], "lock name"),
          owner: text(raw[2], "lock owner"),
          fencingToken: int(raw[3], "fencing token"),
          acquireAt: int(raw[4], "acquireAt"),
          expireAt: int(raw[5], "lock expireAt"),
          leaseId: int(raw[6], "lock lease"),
        },
      };
    }
    case "snapshot":
      try {
        return { snapshot: decodeSnapshotMeta(raw, 1).meta };
      } catch (error) {
        throw new FeedDecodeError(`malformed snapshot details: ${(error as Error).message}`);
      }
    default:
      throw new FeedDecodeError(`unknown details layout ${tag}`);
  }
}

/** Decodes one packed event array. */
export function decodeEvents(packed: Uint8Array): ChangeEvent[] {
  const events = decoder.decode(packed);
  if (!Array.isArray(events)) throw new FeedDecodeError("events are not an array");
  return events.map((raw: unknown): ChangeEvent => {
    if (!Array.isArray(raw) || raw.length < 9) throw new FeedDecodeError("malformed event");
    const kind = utf8.decode(bytes(raw[0], "kind"));
    if (!KINDS.has(kind)) throw new FeedDecodeError(`unknown event kind ${kind}`);
    const key = utf8.decode(bytes(raw[1], "key"));
    const prev = raw[8];
    let prevKv: KeyValue | undefined;
    if (Array.isArray(prev)) prevKv = keyValue(key, prev, 0);
    else if (prev !== false && prev !== null) throw new FeedDecodeError("malformed prev");
    const event: ChangeEvent = { kind: kind as EventKind, kv: keyValue(key, raw, 2), prevKv };
    const details = raw[9];
    if (details === undefined || details === null || details === false) return event;
    return { ...event, ...decodeDetails(details) };
  });
}

/** The revision of a stream entry id `<revision>-<seq>`. */
export function entryRevision(id: Buffer | string): number {
  const text = typeof id === "string" ? id : id.toString("latin1");
  const dash = text.indexOf("-");
  const revision = Number(dash < 0 ? text : text.slice(0, dash));
  if (!Number.isSafeInteger(revision)) throw new FeedDecodeError(`bad entry id ${text}`);
  return revision;
}

/** Decodes one XRANGE entry: [id, [field, value, ...]] with Buffer replies. */
export function decodeFeedEntry(raw: unknown): FeedEntry {
  if (!Array.isArray(raw) || raw.length !== 2 || !Array.isArray(raw[1])) {
    throw new FeedDecodeError("malformed stream entry");
  }
  const [id, fields] = raw as [Buffer, Buffer[]];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i]!.toString("latin1") === "e") {
      return { revision: entryRevision(id), events: decodeEvents(fields[i + 1]!) };
    }
  }
  throw new FeedDecodeError("stream entry without events");
}
