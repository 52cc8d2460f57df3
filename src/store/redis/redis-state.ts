/**
 * What every Redis store class of one backend shares: ONE ioredis client
 * with the Lua scripts defined on it, the epoch (data-loss) check, tenant
 * initialisation, the tenant key names, the mapping of failures to
 * StateError, and the expiry listeners the sweeper registers. RedisKvStore
 * creates and owns it (its start and close are the backend's); the other
 * stores (RedisLeaseStore, and later ones) take it in their constructor and
 * run their scripts through `run`.
 *
 * Data loss is detected, never papered over: `start()` writes a random epoch
 * marker (SET NX) and every script checks the tenant's meta against it. A
 * tenant whose meta is missing is initialised only while the global marker
 * is still the one this replica started with; otherwise (a Redis that came
 * back empty) every call fails DATA_LOSS BACKEND_RESET until a restart.
 *
 * A Redis that comes back with OLDER data (restored from an earlier RDB
 * snapshot or AOF, or failed over to a replica that missed the latest
 * writes) still has its marker. That is caught by the revisions: a reply
 * to a call sent after this replica saw revision R of a tenant must carry
 * R or more; a lower one means acknowledged writes are gone, and is the
 * same latched DATA_LOSS, never a silently reused revision.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { RedisSettings, WatchSettings } from "../../config.js";
import { backendReset, backendUnavailable, Reason, StateError } from "../../core/errors.js";
import type { Tenant } from "../../core/model.js";
import {
  checkKeyPrefix,
  type GlobalKeys,
  globalKeys,
  type TenantKeys,
  tenantKeys,
} from "./keys.js";
import { createRedisClient, toStoreError } from "./redis-client.js";
import { defineScripts, ensureScriptsLoaded, type LoadedScript, ScriptCode } from "./scripts.js";

/** Tenant key sets kept; the map is cleared past this (it is only a cache). */
const MAX_CACHED_TENANTS = 10_000;

/** A backend that must not be used as configured; the message says how to fix it. */
export class StartupError extends Error {
  override readonly name = "StartupError";
}

export function internal(cause: unknown): StateError {
  return new StateError("internal", Reason.INTERNAL, "internal error", {}, cause);
}

/** Runs a reply decoder; a malformed reply is a bug (INTERNAL), not an outage. */
export function decoding<T>(decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    throw internal(error);
  }
}

export class RedisState {
  readonly client: Redis;
  private readonly scripts: readonly LoadedScript[];
  private readonly global: GlobalKeys;
  private readonly tenantKeyCache = new Map<Tenant, TenantKeys>();
  private readonly expiryListeners: ((tenant: Tenant, expireAt: number) => void)[] = [];
  /** The epoch marker read at start; undefined until started. */
  private epoch: string | undefined;
  /** Set once the backend is known to have lost data: every call fails until restart. */
  private reset = false;
  /** The highest tenant revision this replica has seen in a reply, per tenant. */
  private readonly seenRevisions = new Map<Tenant, number>();

  constructor(
    readonly settings: RedisSettings,
    readonly watch: WatchSettings,
    readonly logger: Logger,
    readonly url: string,
  ) {
    this.global = globalKeys(settings.keyPrefix);
    this.client = createRedisClient(settings, url, logger, "latchkey-kv");
    this.scripts = defineScripts(this.client);
  }

  async start(): Promise<void> {
    checkKeyPrefix(this.settings.keyPrefix);
    try {
      await this.client.connect();
    } catch (error) {
      this.client.disconnect();
      throw backendUnavailable(error, "cannot reach the state Redis");
    }
    try {
      await this.checkVersion();
      await this.checkEvictionPolicy();
      await this.reportDurability();
      await this.client.set(this.global.epoch, randomUUID(), "NX");
      const epoch = await this.client.get(this.global.epoch);
      if (epoch === null) {
        throw new StartupError("the epoch marker vanished right after it was written");
      }
      if (!(await ensureScriptsLoaded(this.client, this.scripts))) {
        throw new StartupError("Redis returned another SHA1 for a loaded script");
      }
      this.epoch = epoch;
      this.logger.info({ epoch, prefix: this.settings.keyPrefix }, "redis state store started");
    } catch (error) {
      this.client.disconnect();
      throw error instanceof StartupError ? error : toStoreError(error);
    }
  }

  async close(): Promise<void> {
    if (this.client.status === "end") return;
    if (this.client.status === "ready") await this.client.quit().catch(() => undefined);
    this.client.disconnect();
  }

  async ready(): Promise<boolean> {
    if (this.reset || this.epoch === undefined || this.client.status !== "ready") return false;
    try {
      if (!(await ensureScriptsLoaded(this.client, this.scripts))) return false;
      const epoch = await this.client.get(this.global.epoch);
      if (epoch !== this.epoch) {
        this.latchReset("the epoch marker is missing or changed");
        return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  onExpiryScheduled(listener: (tenant: Tenant, expireAt: number) => void): void {
    this.expiryListeners.push(listener);
  }

  /** Tells the sweeper that something of `tenant` now expires at `expireAt`. */
  scheduled(tenant: Tenant, expireAt: number): void {
    for (const listener of this.expiryListeners) listener(tenant, expireAt);
  }

  /**
   * The run_id a lock node had when it was last seen voting, as the
   * deployment remembers it; recorded once when unknown (first sight).
   * Returns the run_id on record after the call.
   */
  async lockNodeRunId(
    node: string,
    current: string,
    record: "if_absent" | "always",
  ): Promise<string> {
    const epoch = this.assertUsable();
    try {
      // As in initTenant: a Redis that came back empty must get no write.
      if ((await this.client.get(this.global.epoch)) !== epoch) {
        throw this.latchReset("the epoch marker is missing or changed");
      }
      if (record === "always") {
        await this.client.hset(this.global.lockNodes, node, current);
        return current;
      }
      await this.client.hsetnx(this.global.lockNodes, node, current);
      return (await this.client.hget(this.global.lockNodes, node)) ?? current;
    } catch (error) {
      throw toStoreError(error);
    }
  }

  async tenants(): Promise<Tenant[]> {
    this.assertUsable();
    try {
      return await this.client.smembers(this.global.tenants);
    } catch (error) {
      throw toStoreError(error);
    }
  }

  /**
   * Runs one script for a tenant: on NEED_INIT initialises the tenant (after
   * checking the epoch marker) and runs it once more; on EPOCH_MISMATCH
   * latches the reset. Returns the script's structured reply; every failure
   * is a StateError.
   */
  async run(
    tenant: Tenant,
    script: (keys: TenantKeys, epoch: string) => Promise<unknown>,
  ): Promise<{ reply: unknown; floor: number }> {
    const epoch = this.assertUsable();
    const keys = this.keysOf(tenant);
    // Taken before the call is sent: its reply must not be older than this.
    const floor = this.seenRevisions.get(tenant) ?? 0;
    try {
      let reply = await script(keys, epoch);
      if (reply === ScriptCode.NEED_INIT) {
        await this.initTenant(tenant, keys, epoch);
        reply = await script(keys, epoch);
      }
      if (reply === ScriptCode.EPOCH_MISMATCH) {
        throw this.latchReset(`tenant ${JSON.stringify(tenant)} belongs to another epoch`);
      }
      if (reply === ScriptCode.NEED_INIT) {
        // The meta vanished right after it was created: Redis is being reset under us.
        throw backendUnavailable(new Error(`tenant ${JSON.stringify(tenant)} meta vanished`));
      }
      if (typeof reply === "number") throw internal(new Error(`unexpected script reply ${reply}`));
      return { reply, floor };
    } catch (error) {
      throw toStoreError(error);
    }
  }

  /**
   * Decodes the reply of a `run` (see `decoding`) and checks the tenant
   * revision the result carries (its `revision`, or each element's) against
   * the `floor` that run took: lower is data loss (see the file comment).
   */
  decoded<T>(tenant: Tenant, floor: number, decode: () => T): T {
    const result = decoding(decode);
    if (Array.isArray(result)) for (const item of result) this.checkRevision(tenant, floor, item);
    else this.checkRevision(tenant, floor, result);
    return result;
  }

  private checkRevision(tenant: Tenant, floor: number, result: unknown): void {
    const revision = (result as { revision?: unknown } | undefined)?.revision;
    if (typeof revision !== "number") return;
    if (revision < floor) {
      throw this.latchReset(
        `tenant ${JSON.stringify(tenant)} is back at revision ${revision} after this replica saw ${floor}`,
      );
    }
    if (revision > (this.seenRevisions.get(tenant) ?? 0)) {
      if (this.seenRevisions.size >= MAX_CACHED_TENANTS) this.seenRevisions.clear();
      this.seenRevisions.set(tenant, revision);
    }
  }

  /** The epoch this replica started with; throws when not started or reset. */
  assertUsable(): string {
    if (this.reset) throw backendReset();
    if (this.epoch === undefined) throw backendUnavailable(undefined, "backend not started");
    return this.epoch;
  }

  keysOf(tenant: Tenant): TenantKeys {
    let keys = this.tenantKeyCache.get(tenant);
    if (!keys) {
      if (this.tenantKeyCache.size >= MAX_CACHED_TENANTS) this.tenantKeyCache.clear();
      keys = tenantKeys(this.settings.keyPrefix, tenant);
      this.tenantKeyCache.set(tenant, keys);
    }
    return keys;
  }

  /** Creates a tenant's meta, unless Redis lost the epoch marker (then: reset). */
  private async initTenant(tenant: Tenant, keys: TenantKeys, epoch: string): Promise<void> {
    // The marker is checked on the same connection just before the init; a
    // Redis that restarts in between closes that connection, and with no
    // offline queue the init then fails instead of reaching the new server.
    const current = await this.client.get(this.global.epoch);
    if (current !== epoch) throw this.latchReset("the epoch marker is missing or changed");
    await this.client.sadd(this.global.tenants, tenant);
    const result = await this.client.tenantInit(keys.meta, epoch);
    if (result === ScriptCode.EPOCH_MISMATCH) {
      throw this.latchReset(`tenant ${JSON.stringify(tenant)} belongs to another epoch`);
    }
  }

  private latchReset(why: string): StateError {
    if (!this.reset) {
      this.reset = true;
      this.logger.error(
        { prefix: this.settings.keyPrefix, why },
        "the state Redis lost acknowledged data; refusing every call until the service restarts",
      );
    }
    return backendReset();
  }

  /** Refuses Redis before 7.0 (the scripts use shebang flags, ZRANGE BYLEX LIMIT, XADD MINID). */
  private async checkVersion(): Promise<void> {
    const info = await this.client.info("server");
    const version = /^redis_version:(\S+)/m.exec(info)?.[1];
    const major = Number(version?.split(".")[0]);
    if (version === undefined || !Number.isFinite(major)) {
      this.logger.warn("Redis did not report its version; Latchkey needs Redis 7.0 or newer");
      return;
    }
    if (major < 7) {
      throw new StartupError(
        `the state Redis is version ${version}; Latchkey needs Redis 7.0 or newer (its scripts use Redis 7 script flags)`,
      );
    }
  }

  /**
   * CONFIG GET `pattern` as a map; undefined when CONFIG is disabled (managed
   * Redis), after a warning that says what to check by hand.
   */
  private async configValues(
    pattern: string,
    checkByHand: string,
  ): Promise<Map<string, string> | undefined> {
    let reply: unknown;
    try {
      reply = await this.client.config("GET", pattern);
    } catch (error) {
      if (error instanceof Error && error.name === "ReplyError") {
        this.logger.warn(
          { error: error.message },
          `cannot read ${pattern} (CONFIG disabled?); ${checkByHand}`,
        );
        return undefined;
      }
      throw error;
    }
    const values = new Map<string, string>();
    if (Array.isArray(reply)) {
      for (let i = 0; i + 1 < reply.length; i += 2)
        values.set(String(reply[i]), String(reply[i + 1]));
    }
    return values;
  }

  /**
   * Says how durable acknowledged writes are: with AOF and appendfsync
   * always, as durable as etcd's; otherwise a Redis crash or restart loses
   * the latest acknowledged writes (detected, see the file comment, but not
   * undone), which the operator should know at start.
   */
  private async reportDurability(): Promise<void> {
    const advice = "for etcd-like durability run it with appendonly yes and appendfsync always";
    const config = await this.configValues("append*", `make sure ${advice}`);
    if (config === undefined) return;
    const appendonly = config.get("appendonly");
    const fsync = config.get("appendfsync");
    if (appendonly === "yes" && fsync === "always") {
      this.logger.info({ appendonly, appendfsync: fsync }, "the state Redis fsyncs every write");
    } else if (appendonly === "yes") {
      this.logger.warn(
        { appendonly, appendfsync: fsync },
        `the state Redis may lose the last acknowledged writes in a crash (appendfsync ${fsync}); ${advice}`,
      );
    } else {
      this.logger.warn(
        { appendonly },
        `the state Redis keeps no append-only file: a restart loses acknowledged writes (Latchkey then answers DATA_LOSS); ${advice}`,
      );
    }
  }

  /** Refuses an eviction policy that may delete state; tolerates a disabled CONFIG. */
  private async checkEvictionPolicy(): Promise<void> {
    const config = await this.configValues("maxmemory-policy", "make sure it is noeviction");
    if (config === undefined) return;
    const policy = config.get("maxmemory-policy");
    if (policy === undefined) {
      this.logger.warn("Redis did not report maxmemory-policy; make sure it is noeviction");
      return;
    }
    if (policy !== "noeviction") {
      throw new StartupError(
        `the state Redis runs with maxmemory-policy ${policy}, which silently deletes keys under memory pressure; Latchkey needs noeviction: run CONFIG SET maxmemory-policy noeviction (and set it in redis.conf)`,
      );
    }
  }
}
