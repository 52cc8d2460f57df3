/**
 * Checks watch deliveries against a reference history: etcd's six watch
 * guarantees (ordered, unique, atomic, reliable, resumable, bookmarkable)
 * plus agreement with the writes the clients saw acknowledged.
 */
import { EventKind, type WatchResponse } from "../../src/gen/latchkey/v1/watch_pb.js";

export interface DeliveredEvent {
  readonly kind: EventKind;
  readonly key: string;
  readonly value: string;
  readonly version: bigint;
  readonly ttl: boolean;
}

/** One revision of the reference: every event of the tenant at that revision. */
export type Reference = Map<bigint, DeliveredEvent[]>;

export interface WatcherSpec {
  /** Key or prefix the watcher follows. */
  readonly key: string;
  readonly isPrefix: boolean;
}

/** One message as a watcher received it. */
export interface Received {
  readonly revision: bigint;
  readonly events: DeliveredEvent[];
}

const dec = new TextDecoder();

export function toDelivered(message: WatchResponse): Received {
  return {
    revision: message.header!.revision,
    events: message.events.map((e) => ({
      kind: e.kind,
      key: e.kv!.key,
      value: dec.decode(e.kv!.value),
      version: e.kv!.version,
      ttl: e.kv!.expireTime !== undefined,
    })),
  };
}

export function matches(spec: WatcherSpec, key: string): boolean {
  return spec.isPrefix ? key.startsWith(spec.key) : key === spec.key;
}

/**
 * Builds the reference from a complete, everything-matching watch from the
 * first revision, and checks it is itself gap-free (every revision has one
 * message, since every revision records at least one event of the tenant).
 */
export function buildReference(
  messages: Received[],
  from: bigint,
  to: bigint,
): { reference: Reference; problems: string[] } {
  const problems: string[] = [];
  const reference: Reference = new Map();
  let expected = from;
  for (const m of messages) {
    if (m.events.length === 0) continue;
    if (m.revision !== expected)
      problems.push(`reference: expected revision ${expected}, got ${m.revision}`);
    reference.set(m.revision, m.events);
    expected = m.revision + 1n;
  }
  if (expected !== to + 1n)
    problems.push(`reference ends at ${expected - 1n}, the tenant is at ${to}`);
  return { reference, problems };
}

export interface WatcherLog {
  readonly spec: WatcherSpec;
  /** Sessions in order: where each started and what it received (events and progress). */
  readonly sessions: { readonly start: bigint; readonly received: Received[] }[];
}

/**
 * Checks one watcher's sessions against the reference. Each session must
 * deliver exactly the reference's matching events from its start, in order,
 * each revision once and whole; consecutive sessions (resumed from the last
 * revision seen + 1) must join with no gap and no repeat; a progress message
 * at R must come only after every matching event up to R.
 */
export function checkWatcher(
  log: WatcherLog,
  reference: Reference,
  finalRevision: bigint,
): string[] {
  const problems: string[] = [];
  const name = `watcher ${log.spec.isPrefix ? "prefix" : "key"} ${JSON.stringify(log.spec.key)}`;
  const expectedFrom = (start: bigint) => {
    const revisions: bigint[] = [];
    for (const [revision, events] of reference) {
      if (revision >= start && events.some((e) => matches(log.spec, e.key)))
        revisions.push(revision);
    }
    return revisions.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  };
  let covered = -1n;
  for (const [i, session] of log.sessions.entries()) {
    if (i > 0 && session.start !== covered + 1n) {
      problems.push(
        `${name}: session ${i} resumed at ${session.start}, not at last seen + 1 = ${covered + 1n}`,
      );
    }
    const expected = expectedFrom(session.start);
    let next = 0;
    for (const m of session.received) {
      if (m.events.length === 0) {
        // Bookmark: everything matching up to m.revision must already be here.
        const owed = expected[next];
        if (owed !== undefined && owed <= m.revision) {
          problems.push(`${name}: progress at ${m.revision} before the event of revision ${owed}`);
        }
        if (m.revision > covered) covered = m.revision;
        continue;
      }
      const want = expected[next];
      if (want === undefined || m.revision !== want) {
        problems.push(
          `${name}: got revision ${m.revision}, expected ${want ?? "nothing"} (gap, repeat or disorder)`,
        );
        break;
      }
      const truth = reference.get(m.revision)!.filter((e) => matches(log.spec, e.key));
      if (JSON.stringify(m.events, bigintJson) !== JSON.stringify(truth, bigintJson)) {
        problems.push(
          `${name}: revision ${m.revision} differs from the reference (not atomic or wrong events)`,
        );
      }
      next++;
      covered = m.revision;
    }
  }
  if (covered < finalRevision)
    problems.push(`${name}: ends at ${covered}, never reached ${finalRevision}`);
  return problems;
}

/**
 * Checks the reference against the writes the clients saw acknowledged: each
 * acknowledged put is a PUT of its value at its revision; each TTL key that
 * expires does so exactly once; replaying the reference gives the final state.
 */
export function checkAcknowledged(
  reference: Reference,
  acknowledged: { revision: bigint; puts: { key: string; value: string }[]; deletes: string[] }[],
  finalState: Map<string, string>,
): string[] {
  const problems: string[] = [];
  for (const ack of acknowledged) {
    const events = reference.get(ack.revision);
    if (!events) {
      problems.push(`acknowledged write at ${ack.revision} is missing from the feed`);
      continue;
    }
    for (const put of ack.puts) {
      if (
        !events.some((e) => e.kind === EventKind.PUT && e.key === put.key && e.value === put.value)
      ) {
        problems.push(`acknowledged put of ${put.key} at ${ack.revision} is not in the feed`);
      }
    }
    for (const key of ack.deletes) {
      if (!events.some((e) => e.kind === EventKind.DELETE && e.key === key)) {
        problems.push(`acknowledged delete of ${key} at ${ack.revision} is not in the feed`);
      }
    }
  }
  // Replay: the feed alone must reproduce the final state, and expiries must be single.
  const state = new Map<string, { value: string; ttl: boolean }>();
  const revisions = [...reference.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const revision of revisions) {
    for (const e of reference.get(revision)!) {
      if (e.kind === EventKind.PUT) state.set(e.key, { value: e.value, ttl: e.ttl });
      else if (e.kind === EventKind.DELETE) {
        if (!state.delete(e.key)) problems.push(`DELETE of absent key ${e.key} at ${revision}`);
      } else if (e.kind === EventKind.EXPIRE) {
        const had = state.get(e.key);
        if (!had) problems.push(`EXPIRE of absent key ${e.key} at ${revision} (twice?)`);
        else if (!had.ttl) problems.push(`EXPIRE of ${e.key} at ${revision}, which had no TTL`);
        state.delete(e.key);
      }
    }
  }
  const replayed = new Map([...state].map(([k, v]) => [k, v.value]));
  if (JSON.stringify([...replayed].sort()) !== JSON.stringify([...finalState].sort())) {
    problems.push("replaying the feed does not give the final state");
  }
  for (const [key, v] of state)
    if (v.ttl) problems.push(`TTL key ${key} never expired in the feed`);
  return problems;
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}
