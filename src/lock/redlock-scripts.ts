/**
 * The Lua scripts of one Redlock lock node (scripts/*.lua), loaded with the
 * state store's loader (read once per process, `#!lua`, includes, the key
 * count from the file name; ioredis resends as EVAL after NOSCRIPT), and the
 * node's key names.
 *
 * Node keys follow the state store's scheme (prefix, then the encoded tenant
 * as a Cluster hash tag) in a namespace of their own, so a state Redis that
 * is also the lock node keeps the two apart:
 *   P:{T}:redlock:h:<name>   hash {owner, nonce, token}, PEXPIREd: the hold
 *   P:{T}:redlock:ctr        hash name -> newest fencing token; never expires
 */
import type { Result } from "ioredis";
import { tenantKeys } from "../store/redis/keys.js";
import { type LoadedScript, loadScriptSet } from "../store/redis/scripts.js";

const SCRIPTS = {
  redlockAcquire: "acquire-2",
  redlockConfirm: "confirm-2",
  redlockExtend: "extend-1",
  redlockRelease: "release-1",
} as const;

type Arg = string | number;

declare module "ioredis" {
  interface RedisCommander<Context> {
    /** {1, counter, nonce} granted, or {0, remaining ms, counter} held by another owner. */
    redlockAcquire(
      hold: string,
      counters: string,
      name: string,
      owner: string,
      nonce: string,
      ttlMs: Arg,
    ): Result<[number, number, string | number], Context>;
    /** 1 when `nonce` holds the lock (token stored); the counter is raised either way. */
    redlockConfirm(
      hold: string,
      counters: string,
      name: string,
      nonce: string,
      token: Arg,
    ): Result<number, Context>;
    redlockExtend(hold: string, nonce: string, ttlMs: Arg): Result<number, Context>;
    redlockRelease(hold: string, nonce: string): Result<number, Context>;
  }
}

export type RedlockScript = LoadedScript<keyof typeof SCRIPTS>;

let cache: readonly RedlockScript[] | undefined;

/** The lock node scripts, read and resolved once per process. */
export function redlockScripts(): readonly RedlockScript[] {
  cache ??= loadScriptSet(new URL("./scripts/", import.meta.url), SCRIPTS);
  return cache;
}

export interface RedlockKeys {
  readonly hold: string;
  readonly counters: string;
}

/** The keys of one lock name on a lock node (see the file comment). */
export function redlockKeys(prefix: string, tenant: string, name: string): RedlockKeys {
  const base = `${tenantKeys(prefix, tenant).base}redlock:`;
  return { hold: `${base}h:${name}`, counters: `${base}ctr` };
}
