/**
 * The watch domain: request rules, which events a watcher sees, and what a
 * message carries. Delivery (fan-out, buffering, resumption) is the
 * ChangeStream port's job.
 */
import { compareKeys, prefixEnd } from "./keys.js";
import type { Limits } from "./limits.js";
import type { ChangeEvent, EventKind, Tenant } from "./model.js";
import type { ChangeStream, WatchFilter, WatchMessage } from "./ports.js";
import { argumentError, checkName } from "./validate.js";

export interface WatchInput {
  readonly key: string;
  readonly prefix: string;
  readonly startRevision: number;
  readonly kinds: readonly EventKind[];
  readonly prevKv: boolean;
  readonly progressNotify: boolean;
}

/** Whether an event's key and kind match a filter. */
export function matchesFilter(event: ChangeEvent, filter: WatchFilter): boolean {
  if (filter.kinds !== undefined && !filter.kinds.has(event.kind)) return false;
  const key = event.kv.key;
  if (!filter.isPrefix) return key === filter.key;
  return (
    compareKeys(key, filter.key) >= 0 &&
    (filter.prefixEnd === undefined || compareKeys(key, filter.prefixEnd) < 0)
  );
}

/** The events of one revision a filter lets through, shaped for delivery (prev_kv only when asked). */
export function visibleEvents(events: readonly ChangeEvent[], filter: WatchFilter): ChangeEvent[] {
  const visible: ChangeEvent[] = [];
  for (const event of events) {
    if (!matchesFilter(event, filter)) continue;
    visible.push(
      filter.prevKv || event.prevKv === undefined ? event : { ...event, prevKv: undefined },
    );
  }
  return visible;
}

/** A stable identity for a filter, so watchers with equal filters share work. */
export function filterSignature(filter: WatchFilter): string {
  const kinds = filter.kinds ? [...filter.kinds].sort().join(",") : "*";
  return `${filter.isPrefix ? "p" : "k"}\u0000${filter.key}\u0000${kinds}\u0000${filter.prevKv ? 1 : 0}`;
}

export class Watches {
  constructor(
    private readonly stream: ChangeStream,
    private readonly limits: Limits,
    private readonly progressIntervalMs: number,
  ) {}

  watch(tenant: Tenant, input: WatchInput, signal: AbortSignal): AsyncIterable<WatchMessage> {
    if (input.key !== "" && input.prefix !== "")
      throw argumentError("prefix", "key and prefix are exclusive");
    if (input.key !== "") checkName(input.key, "key", this.limits);
    else checkName(input.prefix, "prefix", this.limits, true);
    if (!Number.isSafeInteger(input.startRevision) || input.startRevision < 0) {
      throw argumentError("start_revision", "start_revision must not be negative");
    }
    const isPrefix = input.key === "";
    const filter: WatchFilter = {
      key: isPrefix ? input.prefix : input.key,
      isPrefix,
      prefixEnd: isPrefix ? prefixEnd(input.prefix) : undefined,
      kinds: input.kinds.length === 0 ? undefined : new Set(input.kinds),
      prevKv: input.prevKv,
    };
    return this.stream.watch(
      tenant,
      {
        fromRevision: input.startRevision,
        filter,
        progressIntervalMs: input.progressNotify ? this.progressIntervalMs : undefined,
      },
      signal,
    );
  }
}
