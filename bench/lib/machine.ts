/** What the figures were measured on, printed above the tables and saved with them. */
import { readFileSync } from "node:fs";
import os from "node:os";
import { etcdVersion } from "./etcd.js";
import { h2loadVersion } from "./h2load.js";
import { REPO_ROOT } from "./paths.js";
import { runCommand } from "./proc.js";
import { redisVersion } from "./redis.js";

export interface MachineInfo {
  readonly date: string;
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGb: number;
  readonly kernel: string;
  readonly node: string;
  readonly redis: string;
  readonly etcd: string;
  readonly h2load: string;
  readonly loadAverage: string;
  readonly commit: string;
  readonly serviceRuntime: string;
}

function cpuModel(): string {
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim();
    if (model) return model;
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? "unknown";
}

async function commit(): Promise<string> {
  // Read-only git queries: the lead commits, the benchmark never changes the repository.
  const head = await runCommand("git", ["rev-parse", "--short", "HEAD"], {
    cwd: REPO_ROOT,
    check: false,
  });
  if (head.code !== 0) return "unknown";
  const status = await runCommand("git", ["status", "--porcelain", "--", "src"], {
    cwd: REPO_ROOT,
    check: false,
  });
  const dirty = status.stdout.trim() === "" ? "" : " + uncommitted changes in src/";
  return `${head.stdout.trim()}${dirty}`;
}

export async function machineInfo(serviceRuntime: string): Promise<MachineInfo> {
  const [redis, etcd, h2load, rev] = await Promise.all([
    redisVersion().catch(() => "not installed"),
    etcdVersion().then((v) => v ?? "not installed"),
    h2loadVersion().catch(() => "not installed"),
    commit(),
  ]);
  return {
    date: new Date().toISOString(),
    cpuModel: cpuModel(),
    cores: os.cpus().length,
    memoryGb: Math.round(os.totalmem() / 1024 ** 3),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    redis,
    etcd,
    h2load,
    loadAverage: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" "),
    commit: rev,
    serviceRuntime,
  };
}

export function formatMachine(m: MachineInfo): string {
  return [
    `- date: ${m.date}; commit ${m.commit}`,
    `- CPU: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GB RAM; ${m.kernel}; load average at start ${m.loadAverage}`,
    `- Node ${m.node} (service run as ${m.serviceRuntime}); Redis ${m.redis}; etcd ${m.etcd}; ${m.h2load}`,
    "- servers (Latchkey, Redis, etcd) pinned to core 0 with taskset; load generators and watcher processes on core 1",
  ].join("\n");
}
