/**
 * Loads the Lua scripts of the Redis backend: reads `scripts/<name>-<keys>.lua`,
 * splices `--- @include "lib/x"` lines with `scripts/lib/x.lua` (each library
 * once per script), and registers every script on a client with ioredis
 * `defineCommand`. ioredis sends EVAL the first time on each connection and
 * EVALSHA afterwards, and resends as EVAL after NOSCRIPT (an empty script
 * cache after SCRIPT FLUSH, a restart or a failover).
 *
 * Every script is sent with a `#!lua` shebang (no flags), which needs Redis
 * 7: Redis then refuses a script up front when it is out of memory (no
 * half-applied script), and in a Cluster refuses any script that touches
 * keys of two slots (each script must stay inside one tenant's hash tag).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Callback, Redis, Result } from "ioredis";

/** Negative reply codes shared by every script (see scripts/lib/kv.lua). */
export const ScriptCode = {
  /** The tenant meta hash is missing: check the epoch, initialise, retry. */
  NEED_INIT: -1,
  /** The tenant meta was written under another epoch: the backend was reset. */
  EPOCH_MISMATCH: -2,
} as const;

type Arg = string | Buffer | number;

/**
 * The scripts, by command name: file stem and number of KEYS (from the file
 * name). A new script is a file in scripts/, a line here and a line in the
 * RedisCommander declaration below; `loadScripts` reads every one once.
 */
const SCRIPTS = {
  tenantInit: "tenant-init-1",
  kvGet: "kv-get-2",
  kvRange: "kv-range-4",
  kvTxn: "kv-txn-6",
  kvSweep: "kv-sweep-8",
  feedRead: "feed-read-2",
  leaseGrant: "lease-grant-8",
  leaseRenew: "lease-renew-3",
  leaseRevoke: "lease-revoke-8",
  leaseRead: "lease-read-3",
  lockGrant: "lock-grant-6",
  lockRelease: "lock-release-5",
  lockExtend: "lock-extend-3",
  lockRead: "lock-read-3",
  snapshotGet: "snapshot-get-1",
  snapshotSave: "snapshot-save-5",
  snapshotReplace: "snapshot-replace-5",
  snapshotDelete: "snapshot-delete-8",
  snapshotList: "snapshot-list-1",
  snapshotCheckpoint: "snapshot-checkpoint-5",
  snapshotRestore: "snapshot-restore-5",
  snapshotCheckpoints: "snapshot-checkpoints-1",
  snapshotSuspend: "snapshot-suspend-5",
  snapshotResume: "snapshot-resume-5",
  snapshotAppend: "snapshot-append-2",
  snapshotRead: "snapshot-read-1",
  snapshotSweep: "snapshot-sweep-5",
} as const;

export type ScriptName = keyof typeof SCRIPTS;

/**
 * The commands `defineScripts` adds: KEYS first (as many as the file name
 * says, in the order its header lists them), then ARGV. `...Buffer`
 * variants reply with Buffers (values are binary), the others with strings.
 */
declare module "ioredis" {
  interface RedisCommander<Context> {
    tenantInit(meta: string, epoch: string, callback?: Callback<number>): Result<number, Context>;
    kvGetBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    kvRangeBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    kvTxnBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    kvSweep(...keysThenArgs: Arg[]): Result<unknown, Context>;
    feedReadBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    leaseGrant(...keysThenArgs: Arg[]): Result<unknown, Context>;
    leaseRenew(...keysThenArgs: Arg[]): Result<unknown, Context>;
    leaseRevoke(...keysThenArgs: Arg[]): Result<unknown, Context>;
    leaseRead(...keysThenArgs: Arg[]): Result<unknown, Context>;
    lockGrant(...keysThenArgs: Arg[]): Result<unknown, Context>;
    lockRelease(...keysThenArgs: Arg[]): Result<unknown, Context>;
    lockExtend(...keysThenArgs: Arg[]): Result<unknown, Context>;
    lockRead(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotGetBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotSaveBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotReplaceBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotDelete(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotListBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotCheckpointBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotRestoreBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotCheckpointsBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotSuspendBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotResumeBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotAppend(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotReadBuffer(...keysThenArgs: Arg[]): Result<unknown, Context>;
    snapshotSweep(...keysThenArgs: Arg[]): Result<unknown, Context>;
  }
}

export interface LoadedScript<N extends string = ScriptName> {
  readonly name: N;
  readonly file: string;
  readonly numberOfKeys: number;
  readonly lua: string;
  readonly sha: string;
}

const INCLUDE = /^--- @include "([a-z0-9/_-]+)"\s*$/;

/** The state store's scripts; other adapters pass their own folder to loadScriptSet. */
const SCRIPT_DIR = new URL("./scripts/", import.meta.url);

function readScript(stem: string, dir: URL = SCRIPT_DIR): string {
  return readFileSync(new URL(`${stem}.lua`, dir), "utf8");
}

/** Resolves include lines recursively; each library is spliced once, cycles are errors. */
export function resolveIncludes(
  source: string,
  read: (stem: string) => string = readScript,
  seen: Set<string> = new Set(),
  stack: readonly string[] = [],
): string {
  return source
    .split("\n")
    .map((line) => {
      const match = INCLUDE.exec(line);
      if (!match) return line;
      const stem = match[1]!;
      if (stack.includes(stem))
        throw new Error(`Lua include cycle: ${[...stack, stem].join(" -> ")}`);
      if (seen.has(stem)) return `-- (${stem} already included)`;
      seen.add(stem);
      return resolveIncludes(read(stem), read, seen, [...stack, stem]);
    })
    .join("\n");
}

let cache: readonly LoadedScript[] | undefined;

/**
 * Reads and resolves a table of scripts (command name -> file stem ending in
 * its key count) from `dir`, the folder of the `.lua` files and their `lib/`.
 * Every Redis adapter with scripts of its own (the state store, the Redlock
 * lock nodes) loads them this way.
 */
export function loadScriptSet<N extends string>(
  dir: URL,
  table: Readonly<Record<N, string>>,
): readonly LoadedScript<N>[] {
  const read = (stem: string) => readScript(stem, dir);
  return (Object.entries(table) as [N, string][]).map(([name, file]) => {
    const keys = /-(\d+)$/.exec(file);
    if (!keys) throw new Error(`script file ${file}.lua does not end with its key count`);
    const lua = `#!lua\n${resolveIncludes(read(file), read)}`;
    return {
      name,
      file: `${file}.lua`,
      numberOfKeys: Number(keys[1]),
      lua,
      sha: createHash("sha1").update(lua).digest("hex"),
    };
  });
}

/** Every script of the state store, read and resolved once per process. */
export function loadScripts(): readonly LoadedScript[] {
  cache ??= loadScriptSet(SCRIPT_DIR, SCRIPTS);
  return cache;
}

/** Registers `scripts` (by default the state store's) on `client`, once per client. */
export function defineScripts(client: Redis): readonly LoadedScript[];
export function defineScripts<N extends string>(
  client: Redis,
  scripts: readonly LoadedScript<N>[],
): readonly LoadedScript<N>[];
export function defineScripts(
  client: Redis,
  scripts: readonly LoadedScript<string>[] = loadScripts(),
): readonly LoadedScript<string>[] {
  for (const script of scripts) {
    client.defineCommand(script.name, { numberOfKeys: script.numberOfKeys, lua: script.lua });
  }
  return scripts;
}

/**
 * Makes sure the server's script cache holds every script (SCRIPT EXISTS,
 * then SCRIPT LOAD for the missing ones). Resolves true when all are loaded.
 */
export async function ensureScriptsLoaded(
  client: Redis,
  scripts: readonly LoadedScript<string>[],
): Promise<boolean> {
  const exists = (await client.script("EXISTS", ...scripts.map((s) => s.sha))) as number[];
  const missing = scripts.filter((_, i) => exists[i] !== 1);
  for (const script of missing) {
    const sha = (await client.script("LOAD", script.lua)) as string;
    if (sha !== script.sha) return false;
  }
  return true;
}
