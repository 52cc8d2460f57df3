/**
 * Spawns real redis-server processes on free loopback ports for tests, and
 * stops them. Nothing is persisted unless asked (AOF for restart tests).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RedisProcess {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGTERM, then SIGKILL) and waits for exit. */
  stop(): Promise<void>;
  /** Kills the server at once (SIGKILL), as a crash. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: the server hangs without closing its sockets. */
  pause(): void;
  resume(): void;
  /** Starts the server again on the same port; `persist` servers reload their AOF. */
  restart(): Promise<void>;
  readonly running: boolean;
}

export interface RedisOptions {
  /** Extra redis-server arguments, e.g. ["--maxmemory-policy", "allkeys-lru"]. */
  readonly args?: readonly string[];
  /** Keep an append-only file (appendfsync always) so data survives restart(). */
  readonly persist?: boolean;
  readonly port?: number;
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

async function waitForPing(port: number, child: ChildProcess, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`redis-server on ${port} exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.setTimeout(200);
      socket.once("connect", () => socket.write("PING\r\n"));
      socket.once("data", (data) => {
        socket.destroy();
        resolve(data.toString().startsWith("+PONG"));
      });
      socket.once("error", () => resolve(false));
      socket.once("timeout", () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`redis-server on ${port} did not answer PING`);
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisProcess> {
  const dir = mkdtempSync(join(tmpdir(), "latchkey-redis-"));
  let port = options.port ?? (await freePort());
  let child: ChildProcess | undefined;

  const launch = async () => {
    const args = [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--dir",
      dir,
      "--daemonize",
      "no",
      "--loglevel",
      "warning",
      "--maxmemory-policy",
      "noeviction",
      ...(options.persist
        ? ["--appendonly", "yes", "--appendfsync", "always"]
        : ["--appendonly", "no"]),
      ...(options.args ?? []),
    ];
    child = spawn("redis-server", args, { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.resume();
    await waitForPing(port, child);
  };

  const exited = (c: ChildProcess) =>
    c.exitCode !== null || c.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => c.once("exit", () => resolve()));

  for (let attempt = 0; ; attempt++) {
    try {
      await launch();
      break;
    } catch (error) {
      if (attempt >= 3 || options.port !== undefined) throw error;
      port = await freePort();
    }
  }

  const handle: RedisProcess = {
    get port() {
      return port;
    },
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    async stop() {
      if (!child || !handle.running) return;
      const c = child;
      c.kill("SIGCONT");
      c.kill("SIGTERM");
      const timer = setTimeout(() => c.kill("SIGKILL"), 2000);
      await exited(c);
      clearTimeout(timer);
    },
    async kill() {
      if (!child || !handle.running) return;
      const c = child;
      c.kill("SIGKILL");
      await exited(c);
    },
    pause() {
      child?.kill("SIGSTOP");
    },
    resume() {
      child?.kill("SIGCONT");
    },
    async restart() {
      await handle.stop();
      await launch();
    },
  };
  return handle;
}

/** Stops every server given; undefined entries are skipped. */
export async function stopAll(servers: readonly (RedisProcess | undefined)[]): Promise<void> {
  await Promise.all(servers.map((s) => s?.stop()));
}
