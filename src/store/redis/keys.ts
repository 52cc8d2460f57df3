/**
 * Every Redis key name Latchkey writes, in one place. P is the configured
 * prefix (config.redis.keyPrefix, default "lk"); T is the tenant, encoded.
 *
 * Global keys (not tied to a tenant, so in any Cluster slot):
 *   P:epoch            string   random id written at the first start (SET NX);
 *                               gone or changed = the backend lost its data
 *   P:tenants          set      tenant names that were ever initialised (sweeper)
 *   P:locknodes        hash     lock node host:port -> the run_id last seen voting
 *                               (Redlock's delayed restart, see src/lock/lock-node.ts)
 *
 * Tenant keys: the encoded tenant is a hash tag, so every key of one tenant
 * lies in one Cluster slot and each script touches one slot:
 *   P:{T}:meta         hash     epoch (the epoch the tenant was created in), rev
 *   P:{T}:idx          zset     score 0, member = user key (ZRANGE BYLEX order)
 *   P:{T}:exp          zset     score = expire ms, member = user key
 *   P:{T}:feed         stream   changefeed, one entry per revision, id <rev>-0
 *   P:{T}:fence        hash     lock name -> newest fencing token granted
 *   P:{T}:k:<key>      hash     one user key's record (see scripts/lib/kv.lua)
 *   P:{T}:lease:exp    zset     score = expire ms, member = lease id padded
 *                               to 16 digits (leaseMember); a lease exists
 *                               exactly while it is a member
 *   P:{T}:lease:ttl    hash     padded lease id -> granted TTL ms
 *   P:{T}:lease:<id>:k zset     score 0, member = user key attached to lease <id>
 *   P:{T}:lease:<id>:l zset     score 0, member = lock name held under lease <id>
 *   P:{T}:lock:idx     zset     score 0, member = lock name (List by prefix, BYLEX)
 *   P:{T}:lock:exp     zset     score = expire ms, member = name of a lock without a lease
 *   P:{T}:lock:r:<name> hash    one lock record (see scripts/lib/lease.lua)
 *   P:{T}:snap:*       execution state: snapshots, their List and expiry
 *                      indexes, resume tokens, checkpoints, event logs and
 *                      idempotency records; layout in scripts/lib/snapshot.lua
 *                      (execution ids hold no '/' or NUL, and every id-bearing
 *                      name puts the id last or before a '/')
 *
 * Why no `{`, `}` or `:` can escape: the tenant is percent-encoded (every
 * byte outside [A-Za-z0-9._-] becomes %XX), so the first `{`...`}` of a
 * tenant key is always exactly {T}; the prefix may hold neither brace. User
 * keys only ever follow the fixed `:k:` namespace (lock names `:lock:r:`;
 * lease ids are decimal digits), after the hash tag, so whatever they
 * contain cannot change the slot or reach another tenant's or another
 * namespace's keys.
 */

const SAFE = /^[A-Za-z0-9._-]$/;
const encoder = new TextEncoder();

/**
 * Percent-encodes a tenant name: bytes outside [A-Za-z0-9._-] become %XX.
 * The empty name becomes "%" (never produced otherwise), since an empty
 * hash tag `{}` would make Redis hash the whole key name.
 */
export function encodeTenant(tenant: string): string {
  if (tenant === "") return "%";
  let out = "";
  for (const ch of tenant) {
    if (SAFE.test(ch)) {
      out += ch;
      continue;
    }
    for (const byte of encoder.encode(ch)) {
      out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    }
  }
  return out;
}

/** Checks a configured key prefix: non-empty and without hash-tag braces. */
export function checkKeyPrefix(prefix: string): void {
  if (prefix === "" || prefix.includes("{") || prefix.includes("}")) {
    throw new Error(
      `the Redis key prefix ${JSON.stringify(prefix)} must be non-empty and hold no "{" or "}" (they would break the per-tenant hash tags); set LATCHKEY_REDIS_KEY_PREFIX`,
    );
  }
}

export interface GlobalKeys {
  readonly epoch: string;
  readonly tenants: string;
  readonly lockNodes: string;
}

export function globalKeys(prefix: string): GlobalKeys {
  return {
    epoch: `${prefix}:epoch`,
    tenants: `${prefix}:tenants`,
    lockNodes: `${prefix}:locknodes`,
  };
}

export interface TenantKeys {
  /** `P:{T}:`, the start of every key of the tenant. */
  readonly base: string;
  readonly meta: string;
  readonly idx: string;
  readonly exp: string;
  readonly feed: string;
  readonly fence: string;
  /** `P:{T}:k:`; a user key's record is this plus the key. */
  readonly record: string;
  readonly leaseExp: string;
  readonly leaseTtl: string;
  /** `P:{T}:lease:`; a lease's key and lock sets are this plus `<id>:k` and `<id>:l`. */
  readonly lease: string;
  readonly lockIdx: string;
  readonly lockExp: string;
  /** `P:{T}:lock:r:`; a lock record is this plus the lock name. */
  readonly lock: string;
  /** `P:{T}:snap:`, the start of every execution-state key (see scripts/lib/snapshot.lua). */
  readonly snap: string;
  readonly snapExp: string;
  readonly snapTok: string;
  readonly snapClock: string;
}

/**
 * KEYS[1..8] of the scripts that may expire anything of a tenant (keys,
 * leases with their keys and locks, lock records): kv-sweep-8,
 * lease-grant-8 and lease-revoke-8 take them in this order.
 */
export function expiryKeys(
  k: TenantKeys,
): [string, string, string, string, string, string, string, string] {
  return [k.meta, k.idx, k.exp, k.feed, k.leaseExp, k.leaseTtl, k.lockIdx, k.lockExp];
}

export function tenantKeys(prefix: string, tenant: string): TenantKeys {
  const base = `${prefix}:{${encodeTenant(tenant)}}:`;
  return {
    base,
    meta: `${base}meta`,
    idx: `${base}idx`,
    exp: `${base}exp`,
    feed: `${base}feed`,
    fence: `${base}fence`,
    record: `${base}k:`,
    leaseExp: `${base}lease:exp`,
    leaseTtl: `${base}lease:ttl`,
    lease: `${base}lease:`,
    lockIdx: `${base}lock:idx`,
    lockExp: `${base}lock:exp`,
    lock: `${base}lock:r:`,
    snap: `${base}snap:`,
    snapExp: `${base}snap:exp`,
    snapTok: `${base}snap:tok`,
    snapClock: `${base}snap:clock`,
  };
}

/** The record key of one user key (built the same way inside the Lua scripts). */
export function recordKey(keys: TenantKeys, key: string): string {
  return keys.record + key;
}

/**
 * A lease's member in the lease:exp zset and field in lease:ttl: the id
 * zero-padded to 16 digits (ids are below 2^53), so that leases due at the
 * same ms sort by id, as in the memory backend (built the same way in Lua).
 */
export function leaseMember(id: number): string {
  return String(id).padStart(16, "0");
}

/** The key set (`k`) or lock set (`l`) of a lease. */
export function leaseSetKey(keys: TenantKeys, id: number, kind: "k" | "l"): string {
  return `${keys.lease}${id}:${kind}`;
}

/** The record key of one lock. */
export function lockKey(keys: TenantKeys, name: string): string {
  return keys.lock + name;
}
