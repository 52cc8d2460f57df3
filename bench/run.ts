/**
 * `npm run bench [-- options]`: runs the scenarios of bench/scenarios/ and
 * prints one table per group, each Latchkey row next to its peer with the
 * ratios, plus the machine. Results also go to .bench/ (gitignored) as JSON
 * and markdown, ready to paste into the README.
 *
 *   --only kv,watch     scenarios to run (default: all)
 *   --duration <s>      seconds per measurement (default 10; --quick 3)
 *   --rounds <n>        repetitions per cell, alternating subjects (default 2; --quick 1)
 *   --quick             short cells, one round, fewer watch cells
 *   --runtime dist|tsx  run the compiled build (default) or src/ through tsx
 *   --list              list the scenarios and exit
 *
 * Servers are pinned to core 0 and load generators to core 1; the runner
 * pins itself to core 1. Every child process is stopped on exit, on failure
 * and on Ctrl-C. Runs on one machine are serialized (.bench/run.lock): a
 * second `npm run bench` waits for the first.
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { ServiceRuntime } from "./lib/build.js";
import { setServiceRuntime } from "./lib/latchkey.js";
import { acquireRunLock } from "./lib/lock.js";
import { formatMachine, machineInfo } from "./lib/machine.js";
import { BENCH_DIR, REPO_ROOT } from "./lib/paths.js";
import { cleanupAll, installCleanupHandlers, liveChildren, runCommand } from "./lib/proc.js";
import { renderTables } from "./lib/table.js";
import type { BenchOptions, BenchRow, Scenario } from "./types.js";

const LOAD_CORE = 1;

function usage(): never {
  console.log(
    "usage: npm run bench -- [--only kv,watch] [--duration 10] [--rounds 2] [--quick] [--runtime dist|tsx] [--list]",
  );
  process.exit(2);
}

function isScenario(value: unknown): value is Scenario {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Scenario).name === "string" &&
    typeof (value as Scenario).run === "function"
  );
}

/** Every Scenario exported by a module of bench/scenarios/ (default or named export). */
async function discover(): Promise<Scenario[]> {
  const dir = join(REPO_ROOT, "bench", "scenarios");
  const found: Scenario[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!/\.(ts|mts|js|mjs)$/.test(file) || file.endsWith(".d.ts") || file.includes(".test."))
      continue;
    const module = (await import(pathToFileURL(join(dir, file)).href)) as Record<string, unknown>;
    for (const value of Object.values(module)) {
      if (isScenario(value) && !found.some((s) => s.name === value.name)) found.push(value);
    }
  }
  return found;
}

async function main(): Promise<void> {
  let args: ReturnType<typeof parseArgs>["values"];
  try {
    args = parseArgs({
      options: {
        only: { type: "string" },
        duration: { type: "string" },
        rounds: { type: "string" },
        quick: { type: "boolean", default: false },
        runtime: { type: "string", default: "dist" },
        list: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }).values;
  } catch (error) {
    console.error((error as Error).message);
    usage();
  }
  if (args.help) usage();
  const quick = args.quick === true;
  const duration = Number(args.duration ?? (quick ? 3 : 10));
  const rounds = Number(args.rounds ?? (quick ? 1 : 2));
  const runtime = String(args.runtime) as ServiceRuntime;
  if (!(duration > 0) || !(rounds >= 1) || (runtime !== "dist" && runtime !== "tsx")) usage();

  const log = (line: string) => console.error(line);
  installCleanupHandlers(log);
  // The runner itself stays off the server core.
  await runCommand("taskset", ["-a", "-p", "-c", String(LOAD_CORE), String(process.pid)], {
    check: false,
  });

  const all = await discover();
  if (args.list) {
    for (const s of all) console.log(s.name);
    return;
  }
  const only =
    typeof args.only === "string"
      ? args.only
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : undefined;
  const unknown = only?.filter((name) => !all.some((s) => s.name === name)) ?? [];
  if (unknown.length) {
    console.error(
      `unknown scenario(s): ${unknown.join(", ")}; have: ${all.map((s) => s.name).join(", ")}`,
    );
    process.exit(2);
  }
  const selected = only ? all.filter((s) => only.includes(s.name)) : all;

  mkdirSync(BENCH_DIR, { recursive: true });
  await acquireRunLock(log);
  setServiceRuntime(runtime);
  const machine = await machineInfo(runtime === "dist" ? "node on the tsc build" : "tsx");
  const stamp = machine.date.replace(/[:.]/g, "-");
  const workDir = join(BENCH_DIR, "work", stamp);
  mkdirSync(workDir, { recursive: true });
  log(
    `bench: ${selected.map((s) => s.name).join(", ")}; ${duration} s per cell, ${rounds} round(s)`,
  );
  log(formatMachine(machine));

  const groupNotes = new Map<string, string[]>();
  const options: BenchOptions = {
    durationSeconds: duration,
    quick,
    workDir,
    rounds,
    log,
    note: (group, text) => {
      const list = groupNotes.get(group) ?? [];
      list.push(text);
      groupNotes.set(group, list);
    },
  };
  const rows: BenchRow[] = [];
  const failures: { scenario: string; error: string }[] = [];
  for (const scenario of selected) {
    const started = Date.now();
    log(`\n== ${scenario.name} ==`);
    try {
      rows.push(...(await scenario.run(options)));
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      failures.push({ scenario: scenario.name, error: message });
      log(`scenario ${scenario.name} failed: ${message}`);
    }
    await cleanupAll();
    log(`== ${scenario.name}: ${((Date.now() - started) / 1000).toFixed(0)} s ==`);
  }
  if (liveChildren().length)
    log(`warning: ${liveChildren().length} child process(es) still running`);

  const markdown = [
    "## Benchmarks",
    "",
    formatMachine(machine),
    `- ${duration} s per cell, ${rounds} round(s)${quick ? " (--quick)" : ""}`,
    "",
    renderTables(rows, groupNotes),
    ...failures.map((f) => `**${f.scenario} failed:** ${f.error.split("\n")[0]}\n`),
  ].join("\n");
  console.log(`\n${markdown}`);
  mkdirSync(BENCH_DIR, { recursive: true });
  const json = JSON.stringify(
    {
      machine,
      options: { duration, rounds, quick, runtime, only: only ?? null },
      rows,
      notes: Object.fromEntries(groupNotes),
      failures,
    },
    null,
    2,
  );
  for (const name of [`results-${stamp}`, "latest"]) {
    writeFileSync(join(BENCH_DIR, `${name}.json`), json);
    writeFileSync(join(BENCH_DIR, `${name}.md`), markdown);
  }
  log(`\nwrote .bench/results-${stamp}.{json,md} and .bench/latest.{json,md}`);
  if (failures.length) process.exitCode = 1;
}

main().then(
  async () => {
    await cleanupAll();
    // Nothing a scenario left behind (a timer, a socket) may keep the runner alive.
    process.exit();
  },
  async (error: unknown) => {
    console.error(error);
    await cleanupAll();
    process.exit(1);
  },
);
