/**
 * Starts the service under test: the compiled build (or tsx), pinned to the
 * server core, on free ports (API and admin, for the metrics scrape), with
 * warnings-only logging so the log does not cost CPU per call.
 */
import { join } from "node:path";
import { ensureBuilt, type ServiceRuntime, serviceCommand } from "./build.js";
import { REPO_ROOT } from "./paths.js";
import { freePort, type Managed, spawnManaged, waitForPort } from "./proc.js";

export interface LatchkeyServer {
  readonly port: number;
  readonly adminPort: number;
  readonly url: string;
  readonly pid: number;
  readonly process: Managed;
  stop(): Promise<void>;
}

let runtime: ServiceRuntime = "dist";

/** Chosen by the runner (--runtime); every scenario starts the service the same way. */
export function setServiceRuntime(value: ServiceRuntime): void {
  runtime = value;
}

export function serviceRuntime(): ServiceRuntime {
  return runtime;
}

export interface LatchkeyOptions {
  readonly core: number;
  /** Set = Redis backend; undefined = memory backend. */
  readonly redisUrl?: string | undefined;
  /** Extra LATCHKEY_* variables. */
  readonly env?: Readonly<Record<string, string>> | undefined;
  readonly logDir: string;
  readonly log: (line: string) => void;
  /** A name for the log file. */
  readonly label: string;
  /** Extra node flags (e.g. --cpu-prof); BENCH_SERVICE_NODE_ARGS adds more to every start. */
  readonly nodeArgs?: readonly string[] | undefined;
}

export async function startLatchkey(options: LatchkeyOptions): Promise<LatchkeyServer> {
  if (runtime === "dist") await ensureBuilt(options.log);
  const port = await freePort();
  const adminPort = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: "production",
    LATCHKEY_HOST: "127.0.0.1",
    LATCHKEY_PORT: String(port),
    LATCHKEY_ADMIN_PORT: String(adminPort),
    LATCHKEY_LOG_LEVEL: "warn",
    ...options.env,
  };
  delete env.LATCHKEY_REDIS_URL;
  if (options.redisUrl) env.LATCHKEY_REDIS_URL = options.redisUrl;
  const { command, args } = serviceCommand(runtime);
  const extra = [
    ...(options.nodeArgs ?? []),
    ...(process.env.BENCH_SERVICE_NODE_ARGS ?? "").split(/\s+/).filter(Boolean),
  ];
  const proc = spawnManaged(`latchkey(${options.label})`, command, [...extra, ...args], {
    core: options.core,
    env,
    cwd: REPO_ROOT,
    logFile: join(options.logDir, `latchkey-${options.label}-${port}.log`),
  });
  await waitForPort(port, proc, 30_000);
  await waitForPort(adminPort, proc, 10_000);
  return {
    port,
    adminPort,
    url: `http://127.0.0.1:${port}`,
    pid: proc.pid,
    process: proc,
    stop: () => proc.stop(15_000),
  };
}
