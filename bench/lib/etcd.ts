/**
 * A single-member etcd (Debian `etcd-server`, 3.4) as the peer: loopback
 * client and peer ports, data dir in a temporary directory (on this
 * machine's disk, so WAL fsyncs are real), pinned to the server core (Go
 * sizes GOMAXPROCS from the affinity mask: one core). Auto-compaction every
 * minute and an 8 GiB quota keep repeated Put runs from filling the backend.
 */
import http from "node:http";
import { join } from "node:path";
import {
  freePort,
  type Managed,
  makeTempDir,
  runCommand,
  sleep,
  spawnManaged,
  which,
} from "./proc.js";

export interface EtcdServer {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  readonly process: Managed;
  readonly dataDir: string;
  stop(): Promise<void>;
}

/** The etcd version, or undefined when no `etcd` binary is installed. */
export async function etcdVersion(): Promise<string | undefined> {
  if (!(await which("etcd"))) return undefined;
  const { stdout } = await runCommand("etcd", ["--version"], { check: false });
  return /etcd Version:\s*(\S+)/.exec(stdout)?.[1] ?? stdout.split("\n")[0];
}

export async function startEtcd(options: { core: number; logDir: string }): Promise<EtcdServer> {
  const dataDir = join(makeTempDir("etcd"), "data");
  const port = await freePort();
  const peerPort = await freePort();
  const client = `http://127.0.0.1:${port}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const proc = spawnManaged(
    `etcd:${port}`,
    "etcd",
    [
      "--name",
      "bench",
      "--data-dir",
      dataDir,
      "--listen-client-urls",
      client,
      "--advertise-client-urls",
      client,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `bench=${peer}`,
      "--auto-compaction-mode",
      "periodic",
      "--auto-compaction-retention",
      "1m",
      "--quota-backend-bytes",
      String(8 * 1024 ** 3),
      "--log-level",
      "warn",
    ],
    { core: options.core, logFile: join(options.logDir, `etcd-${port}.log`) },
  );
  const deadline = Date.now() + 30_000;
  while (!(await healthy(port))) {
    if (proc.child.exitCode !== null) throw new Error(`etcd exited:\n${proc.tail()}`);
    if (Date.now() > deadline) throw new Error(`etcd not healthy after 30 s:\n${proc.tail()}`);
    await sleep(100);
  }
  return { port, url: client, pid: proc.pid, process: proc, dataDir, stop: () => proc.stop() };
}

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/health", timeout: 1000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve(res.statusCode === 200 && body.includes("true")));
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
  });
}
