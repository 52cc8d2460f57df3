/**
 * One benchmark at a time on this machine: two runs pinning servers to the
 * same core would measure each other. The runner takes .bench/run.lock
 * (holding its pid) and waits while another live run holds it; a lock left
 * by a dead process is taken over.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { BENCH_DIR } from "./paths.js";
import { sleep } from "./proc.js";

const LOCK = join(BENCH_DIR, "run.lock");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Resolves once this process holds the lock; returns its release function. */
export async function acquireRunLock(log: (line: string) => void): Promise<() => void> {
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(LOCK, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      const release = () => {
        try {
          if (readFileSync(LOCK, "utf8").trim() === String(process.pid)) rmSync(LOCK);
        } catch {
          // already gone
        }
      };
      process.on("exit", release);
      return release;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(LOCK, "utf8").trim());
    } catch {
      continue; // released between the two calls
    }
    if (!Number.isInteger(holder) || !alive(holder)) {
      rmSync(LOCK, { force: true });
      continue;
    }
    if (!announced) {
      log(`another benchmark (pid ${holder}) is running: waiting for it to finish...`);
      announced = true;
    }
    await sleep(2000);
  }
}
