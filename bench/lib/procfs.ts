/** Memory and CPU of a process from /proc (Linux). */
import { readFileSync } from "node:fs";

/** VmRSS and VmHWM (peak RSS) in MiB. */
export function memoryOf(pid: number): { rssMb: number; hwmMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
}

const TICKS_PER_SECOND = 100;

/** User + system CPU seconds used so far by the process (all threads). */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may contain spaces) start after ") ".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** CPU seconds of a process, 0 once it is gone. */
export function cpuSecondsOrZero(pid: number): number {
  try {
    return cpuSecondsOf(pid);
  } catch {
    return 0;
  }
}

/** Samples RSS every `everyMs` until stopped; returns the largest RSS seen. */
export function sampleRss(
  pid: number,
  everyMs = 200,
): { stop(): { maxRssMb: number; hwmMb: number } } {
  let max = 0;
  const tick = () => {
    try {
      max = Math.max(max, memoryOf(pid).rssMb);
    } catch {
      // process gone
    }
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      let hwm = Number.NaN;
      try {
        hwm = memoryOf(pid).hwmMb;
      } catch {
        // process gone
      }
      return { maxRssMb: max, hwmMb: hwm };
    },
  };
}

/** Busy and total jiffies of each core, from /proc/stat. */
function coreTimes(): Map<number, { busy: number; total: number }> {
  const out = new Map<number, { busy: number; total: number }>();
  for (const line of readFileSync("/proc/stat", "utf8").split("\n")) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const v = m[2]!.trim().split(/\s+/).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    out.set(Number(m[1]), { busy: total - idle, total });
  }
  return out;
}

/**
 * How busy each core was between start() and stop(), as a fraction: every
 * process counts, including ones the benchmark did not start.
 */
export function coreBusy(): { stop(): Map<number, number> } {
  const before = coreTimes();
  return {
    stop() {
      const after = coreTimes();
      const busy = new Map<number, number>();
      for (const [core, a] of after) {
        const b = before.get(core);
        if (!b || a.total === b.total) continue;
        busy.set(core, (a.busy - b.busy) / (a.total - b.total));
      }
      return busy;
    },
  };
}
