/**
 * Execution state on Redis, with the observable semantics of
 * MemorySnapshotStore: each call is one Lua script (scripts/snapshot-*.lua,
 * helpers and key layout in scripts/lib/snapshot.lua) on Redis's clock,
 * sharing the client, the scripts, the epoch check, the revision counter and
 * the changefeed of the KV store through RedisState. Every mutation writes
 * its changefeed entry in the same script. Reads are scripts on the primary
 * too, so they see every acknowledged write (strong consistency, as KV).
 *
 * Large states travel as one ARGV bulk string (16 MiB by default, far below
 * Redis's proto-max-bulk-len of 512 MB); checkpoints and restores copy them
 * inside Redis with COPY, never through Lua strings.
 */
import type { Redis } from "ioredis";
import { prefixEnd } from "../../core/keys.js";
import type { Suspension, Tenant } from "../../core/model.js";
import type {
  CheckpointInfo,
  EncodedState,
  EventAppend,
  ExecutionEvent,
  SnapshotQuery,
  SnapshotStore,
  SnapshotWrite,
  StoredSnapshot,
} from "../../core/ports.js";
import { listOrderBound, listOrderKey } from "../../core/snapshots.js";
import type { TenantKeys } from "./keys.js";
import type { RedisState } from "./redis-state.js";
import {
  bytesOf,
  decodeSnapshotMeta,
  intOf,
  packMetadata,
  statusOf,
  textOf,
} from "./snapshot-codec.js";

const ALL_STATUSES = "pending,running,suspended,completed,failed,cancelled";
const EMPTY = new Uint8Array(0);

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** A private copy of reply bytes (not a view into a larger reply buffer). */
const copy = (value: unknown, what: string): Uint8Array => new Uint8Array(bytesOf(value, what));

function decodeStored(meta: unknown, state: unknown, input: unknown): StoredSnapshot {
  const decoded = decodeSnapshotMeta(meta as unknown[]);
  const bytes = copy(state, "state");
  return {
    meta: decoded.meta,
    state: {
      encoding: decoded.encoding,
      // Metadata-only reads carry no bytes: the size is the meta's.
      bytes,
      size: decoded.meta.stateSize,
    },
    input: copy(input, "input"),
  };
}

function decodeCheckpoint(raw: unknown[]): CheckpointInfo {
  return {
    name: textOf(raw[0], "checkpoint name"),
    sequence: intOf(raw[1], "checkpoint sequence"),
    createAt: intOf(raw[2], "checkpoint createAt"),
    status: statusOf(raw[3]),
    eventSeq: intOf(raw[4], "checkpoint eventSeq"),
    stateSize: intOf(raw[5], "checkpoint stateSize"),
  };
}

export class RedisSnapshotStore implements SnapshotStore {
  private readonly client: Redis;
  private readonly expiryListeners: ((tenant: Tenant, expireAt: number) => void)[] = [];

  /** `state` is the KV store's (RedisKvStore.state): started and closed with it. */
  constructor(private readonly state: RedisState) {
    this.client = state.client;
  }

  onExpiryScheduled(listener: (tenant: Tenant, expireAt: number) => void): void {
    this.expiryListeners.push(listener);
  }

  tenants(): Promise<Tenant[]> {
    return this.state.tenants();
  }

  async getSnapshot(tenant: Tenant, executionId: string, withState: boolean) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotGetBuffer(k.meta, epoch, k.snap, executionId, withState ? "1" : "0"),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, meta, state, input] = reply as [number, unknown, unknown, unknown];
      return {
        snapshot: meta === null ? undefined : decodeStored(meta, state, input),
        revision,
      };
    });
  }

  async saveSnapshot(tenant: Tenant, write: SnapshotWrite) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotSaveBuffer(
        ...this.mutationKeys(k),
        epoch,
        k.snap,
        this.maxlen,
        write.executionId,
        String(write.sequence),
        write.contentType,
        write.status ?? "",
        asBuffer(packMetadata(write.metadata)),
        write.ttlMs === undefined ? "" : String(write.ttlMs),
        String(write.eventSeq),
        String(write.state.size),
        write.state.encoding,
        asBuffer(write.state.bytes),
      ),
    );
    const outcome = this.state.decoded(tenant, floor, () => {
      const tag = (reply as unknown[])[0];
      if (tag === 1) {
        const [, currentSequence, revision] = reply as [number, number, number];
        return { kind: "stale" as const, currentSequence, revision };
      }
      const [, revision, meta] = reply as [number, number, unknown[]];
      return { kind: "saved" as const, meta: decodeSnapshotMeta(meta).meta, revision };
    });
    if (outcome.kind === "saved") this.scheduled(tenant, outcome.meta.expireAt);
    return outcome;
  }

  async replaceState(
    tenant: Tenant,
    executionId: string,
    expectedSequence: number,
    state: EncodedState,
  ) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotReplaceBuffer(
        ...this.mutationKeys(k),
        epoch,
        k.snap,
        this.maxlen,
        executionId,
        String(expectedSequence),
        String(state.size),
        state.encoding,
        asBuffer(state.bytes),
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const tag = (reply as unknown[])[0];
      if (tag === 1) {
        const [, currentSequence, revision] = reply as [number, number, number];
        return { kind: "stale" as const, currentSequence, revision };
      }
      if (tag === 2) return { kind: "not_found" as const, revision: (reply as number[])[1]! };
      const [, revision, meta] = reply as [number, number, unknown[]];
      return { kind: "saved" as const, meta: decodeSnapshotMeta(meta).meta, revision };
    });
  }

  async deleteSnapshot(
    tenant: Tenant,
    executionId: string,
    purge: { readonly kvPrefix: string } | undefined,
  ) {
    const end = purge ? prefixEnd(purge.kvPrefix) : undefined;
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotDelete(
        ...this.mutationKeys(k),
        k.idx,
        k.exp,
        k.leaseExp,
        epoch,
        k.snap,
        this.maxlen,
        executionId,
        purge ? "1" : "0",
        k.record,
        k.lease,
        purge?.kvPrefix ?? "",
        end === undefined ? "0" : "1",
        end ?? "",
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const [deleted, revision] = reply as [number, number];
      return { deleted: deleted === 1, revision };
    });
  }

  async listSnapshots(tenant: Tenant, query: SnapshotQuery) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotListBuffer(
        k.meta,
        epoch,
        k.snap,
        query.statuses.length > 0 ? query.statuses.join(",") : ALL_STATUSES,
        query.updatedBefore === undefined ? "" : listOrderBound(query.updatedBefore),
        query.after === undefined
          ? ""
          : listOrderKey(query.after.updateAt, query.after.executionId),
        query.updatedFrom === undefined ? "" : listOrderBound(query.updatedFrom),
        String(query.limit),
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, more, page] = reply as [number, number, unknown[][]];
      return {
        snapshots: page.map((raw) => decodeSnapshotMeta(raw).meta),
        more: more === 1,
        revision,
      };
    });
  }

  async checkpoint(tenant: Tenant, executionId: string, name: string, maxCheckpoints: number) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotCheckpointBuffer(
        ...this.mutationKeys(k),
        epoch,
        k.snap,
        this.maxlen,
        executionId,
        name,
        String(maxCheckpoints),
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const tag = (reply as unknown[])[0];
      if (tag === 1) return { kind: "not_found" as const, revision: (reply as number[])[1]! };
      if (tag === 2) {
        const [, count, revision] = reply as [number, number, number];
        return { kind: "quota" as const, count, revision };
      }
      const [, revision, raw] = reply as [number, number, unknown[]];
      return { kind: "created" as const, checkpoint: decodeCheckpoint(raw), revision };
    });
  }

  async restore(tenant: Tenant, executionId: string, name: string) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotRestoreBuffer(
        ...this.mutationKeys(k),
        epoch,
        k.snap,
        this.maxlen,
        executionId,
        name,
      ),
    );
    const outcome = this.state.decoded(tenant, floor, () => {
      const tag = (reply as unknown[])[0];
      if (tag === 1) {
        return { kind: "checkpoint_not_found" as const, revision: (reply as number[])[1]! };
      }
      const [, revision, meta, state, input] = reply as [number, number, unknown, unknown, unknown];
      return { kind: "restored" as const, snapshot: decodeStored(meta, state, input), revision };
    });
    if (outcome.kind === "restored") this.scheduled(tenant, outcome.snapshot.meta.expireAt);
    return outcome;
  }

  async listCheckpoints(tenant: Tenant, executionId: string) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotCheckpointsBuffer(k.meta, epoch, k.snap, executionId),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, raw] = reply as [number, unknown[][]];
      return { checkpoints: raw.map(decodeCheckpoint), revision };
    });
  }

  async suspend(tenant: Tenant, executionId: string, suspension: Suspension, tokenHash: string) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotSuspendBuffer(
        ...this.mutationKeys(k),
        epoch,
        k.snap,
        this.maxlen,
        executionId,
        suspension.reason,
        asBuffer(suspension.data),
        String(suspension.expireAt ?? 0),
        tokenHash,
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const tag = (reply as unknown[])[0];
      if (tag === 1) return { kind: "not_found" as const, revision: (reply as number[])[1]! };
      const [, revision, meta] = reply as [number, number, unknown[]];
      return { kind: "suspended" as const, meta: decodeSnapshotMeta(meta).meta, revision };
    });
  }

  async resume(tenant: Tenant, tokenHash: string, input: Uint8Array) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotResumeBuffer(
        ...this.mutationKeys(k),
        epoch,
        k.snap,
        this.maxlen,
        tokenHash,
        asBuffer(input),
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const tag = (reply as unknown[])[0];
      if (tag === 1) return { kind: "invalid_token" as const, revision: (reply as number[])[1]! };
      const [, revision, meta, state, stored] = reply as [
        number,
        number,
        unknown,
        unknown,
        unknown,
      ];
      return { kind: "resumed" as const, snapshot: decodeStored(meta, state, stored), revision };
    });
  }

  async appendEvents(tenant: Tenant, executionId: string, append: EventAppend) {
    const events: (string | Buffer)[] = [];
    for (const event of append.events) events.push(event.type, asBuffer(event.data));
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotAppend(
        k.meta,
        k.feed,
        epoch,
        k.snap,
        this.maxlen,
        executionId,
        append.expectedLastSeq === undefined ? "" : String(append.expectedLastSeq),
        append.idempotency?.key ?? "",
        append.idempotency?.digest ?? "",
        String(append.idempotency?.ttlMs ?? 0),
        String(append.events.length),
        ...events,
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const tag = (reply as unknown[])[0];
      if (tag === 1) {
        const [, lastSeq, revision] = reply as [number, number, number];
        return { kind: "stale" as const, lastSeq, revision };
      }
      if (tag === 2) {
        return { kind: "idempotency_mismatch" as const, revision: (reply as number[])[1]! };
      }
      const [, firstSeq, lastSeq, replayed, revision] = reply as number[];
      return {
        kind: "appended" as const,
        firstSeq: firstSeq!,
        lastSeq: lastSeq!,
        replayed: replayed === 1,
        revision: revision!,
      };
    });
  }

  async readEvents(
    tenant: Tenant,
    executionId: string,
    afterSeq: number,
    limit: number,
    maxBytes: number,
  ) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotReadBuffer(
        k.meta,
        epoch,
        k.snap,
        executionId,
        String(afterSeq),
        String(limit),
        String(maxBytes),
      ),
    );
    return this.state.decoded(tenant, floor, () => {
      const [revision, lastSeq, raw] = reply as [number, number, unknown[][]];
      const events: ExecutionEvent[] = raw.map((e) => ({
        seq: intOf(e[0], "event seq"),
        type: textOf(e[1], "event type"),
        data: e[2] === null ? EMPTY : copy(e[2], "event data"),
        time: intOf(e[3], "event time"),
      }));
      return { events, lastSeq, revision };
    });
  }

  async sweepExpired(tenant: Tenant, limit: number) {
    const { reply, floor } = await this.state.run(tenant, (k, epoch) =>
      this.client.snapshotSweep(...this.mutationKeys(k), epoch, k.snap, this.maxlen, String(limit)),
    );
    return this.state.decoded(tenant, floor, () => {
      const [expired, nextExpireAt] = reply as [number, number, number];
      return { expired, nextExpireAt: nextExpireAt === 0 ? undefined : nextExpireAt };
    });
  }

  /** KEYS[1..5] of every snapshot mutation script. */
  private mutationKeys(k: TenantKeys): [string, string, string, string, string] {
    return [k.meta, k.feed, k.snapExp, k.snapTok, k.snapClock];
  }

  private get maxlen(): string {
    return String(this.state.watch.historyEntries);
  }

  private scheduled(tenant: Tenant, expireAt: number | undefined): void {
    if (expireAt === undefined) return;
    for (const listener of this.expiryListeners) listener(tenant, expireAt);
  }
}
