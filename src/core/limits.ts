/** Request limits of the contract ("Default limits (configurable)"). */
export interface Limits {
  /** Max UTF-8 bytes of a key, lock name or execution id. */
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
  readonly maxStateBytes: number;
  readonly maxBatchKeys: number;
  readonly maxRangePage: number;
  readonly maxTxnOps: number;
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxKeyBytes: 1024,
  maxValueBytes: 1024 * 1024,
  maxStateBytes: 16 * 1024 * 1024,
  maxBatchKeys: 1000,
  maxRangePage: 10_000,
  maxTxnOps: 128,
  minTtlMs: 10,
  maxTtlMs: 365 * 24 * 3600 * 1000,
});
