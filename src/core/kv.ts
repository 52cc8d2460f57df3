/**
 * The key-value domain: request rules, the translation of Put, Delete and Txn
 * into one atomic plan for the store, and the mapping of outcomes to the
 * contract's errors.
 */
import { Reason, StateError } from "./errors.js";
import { compareKeys, inRange, prefixEnd } from "./keys.js";
import type { Limits } from "./limits.js";
import type {
  Compare,
  Fence,
  KeyRange,
  KeyValue,
  Precondition,
  RangeQuery,
  RangeResult,
  Tenant,
  TxnOp,
  TxnOpResult,
  TxnOutcome,
} from "./model.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import type { KvStore } from "./ports.js";
import {
  argumentError,
  checkBytes,
  checkKey,
  checkKeyBound,
  checkName,
  checkNonNegative,
  checkTtl,
} from "./validate.js";

export interface PutInput {
  readonly key: string;
  readonly value: Uint8Array;
  /** TTL in ms as sent (may be fractional or out of bounds: it is checked here). */
  readonly ttlMs: number | undefined;
  readonly leaseId: number;
  readonly precondition: Precondition | undefined;
  readonly fence: Fence | undefined;
  readonly prevKv: boolean;
}

export interface DeleteInput {
  readonly key: string;
  readonly prefix: string;
  readonly precondition: Precondition | undefined;
  readonly fence: Fence | undefined;
  readonly prevKv: boolean;
}

export interface RangeInput {
  readonly prefix: string;
  readonly start: string;
  readonly end: string;
  readonly limit: number;
  readonly pageToken: string;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
}

export type TxnInputOp =
  | { readonly kind: "put"; readonly put: PutInput }
  | { readonly kind: "delete"; readonly delete: DeleteInput }
  | { readonly kind: "get"; readonly key: string }
  | { readonly kind: "range"; readonly range: RangeInput };

export interface TxnInput {
  readonly compares: readonly Compare[];
  readonly success: readonly TxnInputOp[];
  readonly failure: readonly TxnInputOp[];
  readonly fence: Fence | undefined;
}

export interface RangeOutput extends RangeResult {
  readonly revision: number;
  readonly nextPageToken: string;
}

export interface PutOutput {
  readonly revision: number;
  readonly kv: KeyValue;
  readonly prevKv: KeyValue | undefined;
}

export interface DeleteOutput {
  readonly revision: number;
  readonly deleted: number;
  readonly prevKvs: KeyValue[];
}

export type TxnOutputOp =
  | { readonly kind: "put"; readonly kv: KeyValue; readonly prevKv: KeyValue | undefined }
  | { readonly kind: "delete"; readonly deleted: number; readonly prevKvs: KeyValue[] }
  | { readonly kind: "get"; readonly kv: KeyValue | undefined }
  | { readonly kind: "range"; readonly range: RangeResult; readonly nextPageToken: string };

export interface TxnOutput {
  readonly revision: number;
  readonly succeeded: boolean;
  readonly results: TxnOutputOp[];
}

/** A resolved range plus the query identity its page tokens are bound to. */
interface ResolvedRange {
  readonly query: RangeQuery;
  readonly identity: string;
}

export class Kv {
  constructor(
    private readonly store: KvStore,
    private readonly limits: Limits,
  ) {}

  async get(tenant: Tenant, key: string): Promise<{ kv: KeyValue | undefined; revision: number }> {
    checkKey(key, "key", this.limits);
    const { kvs, revision } = await this.store.get(tenant, [key]);
    return { kv: kvs[0], revision };
  }

  async batchGet(
    tenant: Tenant,
    keys: readonly string[],
  ): Promise<{ kvs: KeyValue[]; revision: number }> {
    if (keys.length === 0) throw argumentError("keys", "keys must not be empty");
    if (keys.length > this.limits.maxBatchKeys) {
      throw new StateError(
        "invalid_argument",
        Reason.TOO_LARGE,
        `keys holds ${keys.length} keys; the limit is ${this.limits.maxBatchKeys}`,
        { field: "keys", limit: String(this.limits.maxBatchKeys) },
      );
    }
    for (const [i, key] of keys.entries()) checkKey(key, `keys[${i}]`, this.limits);
    const { kvs, revision } = await this.store.get(tenant, keys);
    return { kvs: kvs.filter((kv): kv is KeyValue => kv !== undefined), revision };
  }

  async range(tenant: Tenant, input: RangeInput): Promise<RangeOutput> {
    const resolved = this.resolveRange(input, "");
    const result = await this.store.range(tenant, resolved.query);
    return { ...result, nextPageToken: this.nextPageToken(result, resolved) };
  }

  async put(tenant: Tenant, input: PutInput): Promise<PutOutput> {
    const op = this.putOp(input, "");
    const outcome = await this.store.txn(tenant, {
      fences: input.fence ? [this.checkFence(input.fence, "fence")] : [],
      compares: this.preconditionCompares(input.key, input.precondition, "precondition"),
      success: [op],
      failure: [{ kind: "get", key: input.key }],
    });
    const done = this.settle(outcome);
    if (!done.succeeded) throw versionMismatch(input.key, done.results[0]);
    const result = done.results[0] as Extract<TxnOpResult, { kind: "put" }>;
    return { revision: done.revision, kv: result.kv, prevKv: result.prevKv };
  }

  async delete(tenant: Tenant, input: DeleteInput): Promise<DeleteOutput> {
    const op = this.deleteOp(input, "");
    const key = op.kind === "delete" ? op.key : undefined;
    const outcome = await this.store.txn(tenant, {
      fences: input.fence ? [this.checkFence(input.fence, "fence")] : [],
      compares:
        key === undefined ? [] : this.preconditionCompares(key, input.precondition, "precondition"),
      success: [op],
      failure: key === undefined ? [] : [{ kind: "get", key }],
    });
    const done = this.settle(outcome);
    if (!done.succeeded) throw versionMismatch(key ?? "", done.results[0]);
    const result = done.results[0] as Extract<TxnOpResult, { kind: "delete" }>;
    return { revision: done.revision, deleted: result.deleted, prevKvs: result.prevKvs };
  }

  async txn(tenant: Tenant, input: TxnInput): Promise<TxnOutput> {
    const ops = input.success.length + input.failure.length;
    if (input.compares.length > this.limits.maxTxnOps || ops > this.limits.maxTxnOps) {
      throw new StateError(
        "invalid_argument",
        Reason.TOO_LARGE,
        `a Txn may hold at most ${this.limits.maxTxnOps} compares and ${this.limits.maxTxnOps} ops`,
        { field: "success", limit: String(this.limits.maxTxnOps) },
      );
    }
    for (const [i, c] of input.compares.entries()) this.checkCompare(c, `compare[${i}]`);
    const success = this.branch(input.success, "success");
    const failure = this.branch(input.failure, "failure");
    const outcome = await this.store.txn(tenant, {
      fences: input.fence ? [this.checkFence(input.fence, "fence")] : [],
      compares: input.compares,
      success: success.map((b) => b.op),
      failure: failure.map((b) => b.op),
    });
    const done = this.settle(outcome);
    const branch = done.succeeded ? success : failure;
    const results = done.results.map((result, i): TxnOutputOp => {
      if (result.kind !== "range") return result;
      const resolved = branch[i]!.range!;
      return {
        kind: "range",
        range: result.result,
        nextPageToken: this.nextPageToken(result.result, resolved),
      };
    });
    return { revision: done.revision, succeeded: done.succeeded, results };
  }

  /** Turns a store outcome into a result, or the contract's error. */
  private settle(outcome: TxnOutcome): Extract<TxnOutcome, { kind: "done" }> {
    switch (outcome.kind) {
      case "done":
        return outcome;
      case "fence_stale":
        return fenceStale(outcome.lockName, outcome.currentToken);
      case "lease_not_found":
        throw new StateError(
          "not_found",
          Reason.LEASE_NOT_FOUND,
          `lease ${outcome.leaseId} not found`,
          {
            lease_id: String(outcome.leaseId),
          },
        );
    }
  }

  private branch(
    ops: readonly TxnInputOp[],
    field: string,
  ): { op: TxnOp; range?: ResolvedRange }[] {
    const written: { key?: string; range?: KeyRange; field: string }[] = [];
    const overlaps = (key: string | undefined, range: KeyRange | undefined): string | undefined => {
      for (const w of written) {
        if (key !== undefined && w.key === key) return w.field;
        if (key !== undefined && w.range && inRange(key, w.range.start, w.range.end))
          return w.field;
        if (range && w.key !== undefined && inRange(w.key, range.start, range.end)) return w.field;
        if (range && w.range && rangesOverlap(range, w.range)) return w.field;
      }
      return undefined;
    };
    const planned: { op: TxnOp; range?: ResolvedRange }[] = [];
    const plan = (input: TxnInputOp, at: string): { op: TxnOp; range?: ResolvedRange } => {
      switch (input.kind) {
        case "get":
          checkKey(input.key, `${at}.get.key`, this.limits);
          return { op: { kind: "get", key: input.key } };
        case "range": {
          const range = this.resolveRange(input.range, `${at}.range.`);
          return { op: { kind: "range", query: range.query }, range };
        }
        case "put": {
          if (input.put.precondition || input.put.fence) {
            throw argumentError(
              `${at}.put`,
              "ops inside a Txn take no precondition or fence; use compare and fence",
            );
          }
          const op = this.putOp(input.put, `${at}.put.`);
          const clash = overlaps(op.key, undefined);
          if (clash) throw argumentError(at, `${at} writes a key that ${clash} also writes`);
          written.push({ key: op.key, field: at });
          return { op };
        }
        case "delete": {
          if (input.delete.precondition || input.delete.fence) {
            throw argumentError(
              `${at}.delete`,
              "ops inside a Txn take no precondition or fence; use compare and fence",
            );
          }
          const op = this.deleteOp(input.delete, `${at}.delete.`);
          const clash =
            op.kind === "delete" ? overlaps(op.key, undefined) : overlaps(undefined, op.range);
          if (clash) throw argumentError(at, `${at} writes a key that ${clash} also writes`);
          written.push(
            op.kind === "delete" ? { key: op.key, field: at } : { range: op.range, field: at },
          );
          return { op };
        }
      }
    };
    for (const [i, input] of ops.entries()) planned.push(plan(input, `${field}[${i}]`));
    return planned;
  }

  private putOp(input: PutInput, at: string): Extract<TxnOp, { kind: "put" }> {
    checkKey(input.key, `${at}key`, this.limits);
    checkBytes(input.value.length, this.limits.maxValueBytes, `${at}value`);
    checkNonNegative(input.leaseId, `${at}lease_id`);
    if (input.ttlMs !== undefined) {
      checkTtl(input.ttlMs, `${at}ttl`, this.limits);
      if (input.leaseId !== 0) throw argumentError(`${at}ttl`, "ttl and lease_id are exclusive");
    }
    return {
      kind: "put",
      key: input.key,
      value: input.value,
      ttlMs: input.ttlMs,
      leaseId: input.leaseId,
      prevKv: input.prevKv,
    };
  }

  private deleteOp(
    input: DeleteInput,
    at: string,
  ): Extract<TxnOp, { kind: "delete" | "delete_range" }> {
    if (input.key !== "" && input.prefix !== "") {
      throw argumentError(`${at}prefix`, "key and prefix are exclusive");
    }
    if (input.key !== "") {
      checkKey(input.key, `${at}key`, this.limits);
      return { kind: "delete", key: input.key, prevKv: input.prevKv };
    }
    if (input.prefix === "") throw argumentError(`${at}key`, "one of key or prefix is required");
    checkName(input.prefix, `${at}prefix`, this.limits);
    if (input.precondition) {
      throw argumentError(`${at}precondition`, "a precondition applies to one key, not a prefix");
    }
    return {
      kind: "delete_range",
      range: { start: input.prefix, end: prefixEnd(input.prefix) },
      prevKv: input.prevKv,
    };
  }

  private resolveRange(input: RangeInput, at: string): ResolvedRange {
    checkKeyBound(input.prefix, `${at}prefix`, this.limits);
    checkKeyBound(input.start, `${at}start`, this.limits);
    checkKeyBound(input.end, `${at}end`, this.limits);
    if (input.prefix !== "" && (input.start !== "" || input.end !== "")) {
      throw argumentError(`${at}prefix`, "prefix and start/end are exclusive");
    }
    const range: KeyRange =
      input.prefix !== ""
        ? { start: input.prefix, end: prefixEnd(input.prefix) }
        : { start: input.start, end: input.end === "" ? undefined : input.end };
    if (range.end !== undefined && compareKeys(range.start, range.end) > 0) {
      throw argumentError(`${at}end`, "end must not sort before start");
    }
    if (!Number.isSafeInteger(input.limit) || input.limit < 0) {
      throw argumentError(`${at}limit`, "limit must be a non-negative integer");
    }
    if (input.limit > this.limits.maxRangePage) {
      throw new StateError(
        "invalid_argument",
        Reason.TOO_LARGE,
        `limit ${input.limit} exceeds the page maximum ${this.limits.maxRangePage}`,
        { field: `${at}limit`, limit: String(this.limits.maxRangePage) },
      );
    }
    const identity = JSON.stringify([range.start, range.end ?? null]);
    const after = input.pageToken === "" ? undefined : decodePageToken(input.pageToken, identity);
    if (after !== undefined && !inRange(after, range.start, range.end)) {
      throw new StateError(
        "invalid_argument",
        Reason.INVALID_PAGE_TOKEN,
        "page_token is outside the range",
        {
          field: `${at}page_token`,
        },
      );
    }
    return {
      identity,
      query: {
        range,
        after,
        limit: input.limit === 0 ? this.limits.maxRangePage : input.limit,
        keysOnly: input.keysOnly,
        countOnly: input.countOnly,
      },
    };
  }

  private nextPageToken(result: RangeResult, resolved: ResolvedRange): string {
    const last = result.kvs[result.kvs.length - 1];
    return result.more && last ? encodePageToken(last.key, resolved.identity) : "";
  }

  private preconditionCompares(
    key: string,
    precondition: Precondition | undefined,
    field: string,
  ): Compare[] {
    if (!precondition) return [];
    switch (precondition.kind) {
      case "must_not_exist":
        return [{ key, operator: "equal", target: { kind: "exists", value: false } }];
      case "must_exist":
        return [{ key, operator: "equal", target: { kind: "exists", value: true } }];
      case "version":
        checkNonNegative(precondition.version, `${field}.version`);
        return [
          { key, operator: "equal", target: { kind: "version", value: precondition.version } },
        ];
      case "mod_revision":
        checkNonNegative(precondition.modRevision, `${field}.mod_revision`);
        return [
          {
            key,
            operator: "equal",
            target: { kind: "mod_revision", value: precondition.modRevision },
          },
        ];
    }
  }

  private checkCompare(compare: Compare, at: string): void {
    checkKey(compare.key, `${at}.key`, this.limits);
    const { target, operator } = compare;
    if (target.kind === "exists" && operator !== "equal" && operator !== "not_equal") {
      throw argumentError(`${at}.operator`, "an exists compare takes only EQUAL or NOT_EQUAL");
    }
    if (target.kind === "value")
      checkBytes(target.value.length, this.limits.maxValueBytes, `${at}.value`);
    else if (target.kind !== "exists") checkNonNegative(target.value, `${at}.${target.kind}`);
  }

  private checkFence(fence: Fence, field: string): Fence {
    checkName(fence.lockName, `${field}.lock_name`, this.limits);
    checkNonNegative(fence.token, `${field}.token`);
    return fence;
  }
}

function rangesOverlap(a: KeyRange, b: KeyRange): boolean {
  const aBeforeB = a.end !== undefined && compareKeys(a.end, b.start) <= 0;
  const bBeforeA = b.end !== undefined && compareKeys(b.end, a.start) <= 0;
  return !aBeforeB && !bBeforeA;
}

function versionMismatch(key: string, current: TxnOpResult | undefined): StateError {
  const kv = current?.kind === "get" ? current.kv : undefined;
  return new StateError(
    "aborted",
    Reason.VERSION_MISMATCH,
    `precondition failed on key ${JSON.stringify(key)}`,
    {
      key,
      current_version: String(kv?.version ?? 0),
      current_mod_revision: String(kv?.modRevision ?? 0),
    },
  );
}

/** The write was refused because a newer fencing token was granted. */
export function fenceStale(lockName: string, currentToken: number): never {
  throw new StateError(
    "aborted",
    Reason.FENCE_STALE,
    `a newer fencing token was granted for lock ${JSON.stringify(lockName)}`,
    { lock_name: lockName, current_token: String(currentToken) },
  );
}
