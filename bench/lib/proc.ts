/**
 * Child processes of the benchmark: every server, load generator and worker
 * is spawned through here, optionally pinned to one core with `taskset -c`
 * (taskset execs the command, so the child's pid is the command's pid). Every
 * child and temporary directory is registered and removed by `cleanupAll`,
 * which the runner calls on normal exit, failure, Ctrl-C and SIGTERM.
 */
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync, type WriteStream } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Managed {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Last lines of stdout/stderr, for error messages. */
  tail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnManagedOptions {
  /** Pin to this core (`taskset -c <core>`); undefined = inherit the parent's affinity. */
  readonly core?: number | undefined;
  readonly env?: NodeJS.ProcessEnv | undefined;
  readonly cwd?: string | undefined;
  /** stdout and stderr are appended to this file (and kept as a short tail in memory). */
  readonly logFile?: string | undefined;
  /** Adds an IPC channel (for Node workers). */
  readonly ipc?: boolean | undefined;
}

const live = new Set<Managed>();
const tempDirs = new Set<string>();
/** Removed only when the runner exits (cleanupAll runs between scenarios too). */
const exitPaths = new Set<string>();
const TAIL_BYTES = 4000;

export function spawnManaged(
  name: string,
  command: string,
  args: readonly string[],
  options: SpawnManagedOptions = {},
): Managed {
  const file = options.core === undefined ? command : "taskset";
  const argv =
    options.core === undefined ? [...args] : ["-c", String(options.core), command, ...args];
  const spawnOptions: SpawnOptions = {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: options.ipc ? ["ignore", "pipe", "pipe", "ipc"] : ["ignore", "pipe", "pipe"],
  };
  const child = spawn(file, argv, spawnOptions);
  let tail = "";
  let log: WriteStream | undefined;
  if (options.logFile) log = createWriteStream(options.logFile, { flags: "a" });
  const collect = (chunk: Buffer) => {
    tail = (tail + chunk.toString("utf8")).slice(-TAIL_BYTES);
    log?.write(chunk);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => {
      live.delete(managed);
      log?.end();
      resolve(code);
    });
    child.once("error", (error) => {
      tail += `\nspawn error: ${error.message}`;
      live.delete(managed);
      log?.end();
      resolve(-1);
    });
  });
  const managed: Managed = {
    name,
    get pid() {
      return child.pid ?? -1;
    },
    child,
    exited,
    tail: () => tail,
    async stop(graceMs = 3000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  live.add(managed);
  return managed;
}

/** Runs a command to completion; resolves with its output (rejects on a non-zero exit when `check`). */
export async function runCommand(
  command: string,
  args: readonly string[],
  options: SpawnManagedOptions & { check?: boolean; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const file = options.core === undefined ? command : "taskset";
  const argv =
    options.core === undefined ? [...args] : ["-c", String(options.core), command, ...args];
  const child = spawn(file, argv, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const managed: Managed = {
    name: command,
    pid: child.pid ?? -1,
    child,
    exited: new Promise((resolve) => child.once("exit", resolve)),
    tail: () => "",
    async stop() {
      child.kill("SIGKILL");
    },
  };
  live.add(managed);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on("data", (c: Buffer) => out.push(c));
  child.stderr.on("data", (c: Buffer) => err.push(c));
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  }).finally(() => {
    live.delete(managed);
    if (timer) clearTimeout(timer);
  });
  const result = {
    code,
    stdout: Buffer.concat(out).toString("utf8"),
    stderr: Buffer.concat(err).toString("utf8"),
  };
  if (options.check !== false && code !== 0) {
    throw new Error(
      `${command} ${args.join(" ")} exited with ${code}: ${(result.stderr || result.stdout).slice(-2000)}`,
    );
  }
  return result;
}

/** Whether an executable is on PATH. */
export async function which(command: string): Promise<string | undefined> {
  const { code, stdout } = await runCommand("sh", ["-c", `command -v ${command}`], {
    check: false,
  });
  return code === 0 ? stdout.trim() : undefined;
}

/** Registers a path (file or directory) removed when the process exits. */
export function removeOnExit(path: string): void {
  exitPaths.add(path);
}

/** A temporary directory removed by cleanupAll. */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `latchkey-bench-${prefix}-`));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Waits until a TCP connection to the port succeeds (or the process exits). */
export async function waitForPort(
  port: number,
  managed: Managed | undefined,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (managed && (managed.child.exitCode !== null || managed.child.signalCode !== null)) {
      throw new Error(`${managed.name} exited before listening on ${port}:\n${managed.tail()}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.setTimeout(500);
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
      socket.once("timeout", () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(
    `nothing listens on ${port} after ${timeoutMs} ms${managed ? `:\n${managed.tail()}` : ""}`,
  );
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Stops every live child (SIGTERM, SIGKILL after the grace) and removes temporary directories. */
export async function cleanupAll(graceMs = 3000): Promise<void> {
  await Promise.all([...live].map((m) => m.stop(graceMs).catch(() => {})));
  for (const dir of [...tempDirs]) removeTempDir(dir);
}

/** Last resort on process exit: synchronous SIGKILL of whatever is left. */
export function killAllSync(): void {
  for (const m of live) {
    try {
      m.child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const dir of [...tempDirs, ...exitPaths]) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
}

/** Installs Ctrl-C / SIGTERM / crash handlers that clean up every child. Idempotent. */
let installed = false;
export function installCleanupHandlers(log: (line: string) => void): void {
  if (installed) return;
  installed = true;
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      killAllSync();
      process.exit(130);
    }
    interrupted = true;
    log(`\n${signal}: stopping ${live.size} child process(es)...`);
    void cleanupAll(1500).finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  process.on("exit", killAllSync);
}

/** Children still running (for a final check). */
export function liveChildren(): readonly Managed[] {
  return [...live];
}

/** Sends a message and resolves with the first reply of `replyType`. */
export function requestReply<T>(
  proc: Managed,
  message: object,
  replyType: string,
  timeoutMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${proc.name}: no ${replyType} reply in ${timeoutMs} ms\n${proc.tail()}`));
    }, timeoutMs);
    const onMessage = (reply: { type: string; message?: string }) => {
      if (reply.type === "error") {
        cleanup();
        reject(new Error(`${proc.name}: ${reply.message}`));
      } else if (reply.type === replyType) {
        cleanup();
        resolve(reply as T);
      }
    };
    const onExit = () => {
      cleanup();
      reject(new Error(`${proc.name} exited:\n${proc.tail()}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      proc.child.off("message", onMessage);
      proc.child.off("exit", onExit);
    };
    if (!proc.child.connected) {
      clearTimeout(timer);
      reject(new Error(`${proc.name} is gone:\n${proc.tail()}`));
      return;
    }
    proc.child.on("message", onMessage);
    proc.child.once("exit", onExit);
    proc.child.send(message);
  });
}
