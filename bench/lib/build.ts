/**
 * Compiles the service the way `npm run build` does (tsc, then the Lua
 * scripts copied next to the JS), into .bench/build/ instead of dist/ so a
 * benchmark never races a colleague's build. Figures then reflect the
 * production artefact (`node main.js`), not tsx's on-the-fly transform.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { BENCH_DIR, REPO_ROOT } from "./paths.js";
import { removeOnExit, runCommand } from "./proc.js";

export type ServiceRuntime = "dist" | "tsx";

/**
 * One build per runner process: concurrent `npm run bench` runs must not
 * delete each other's running service. Removed when the runner exits.
 */
export const BUILD_DIR = join(BENCH_DIR, "build", `${process.pid}`);

let built: Promise<string | undefined> | undefined;

/**
 * Builds once per run. Resolves with a warning when tsc reported type errors
 * but emitted anyway (others edit src/ concurrently), undefined when clean.
 */
export function ensureBuilt(log: (line: string) => void): Promise<string | undefined> {
  built ??= build(log);
  return built;
}

async function build(log: (line: string) => void): Promise<string | undefined> {
  log(`building the service (tsc -> ${relative(REPO_ROOT, BUILD_DIR)})...`);
  rmSync(BUILD_DIR, { recursive: true, force: true });
  mkdirSync(BUILD_DIR, { recursive: true });
  removeOnExit(BUILD_DIR);
  const tsc = join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");
  const result = await runCommand(
    process.execPath,
    [tsc, "-p", "tsconfig.json", "--outDir", BUILD_DIR],
    { cwd: REPO_ROOT, check: false },
  );
  if (!existsSync(join(BUILD_DIR, "main.js"))) {
    throw new Error(`tsc emitted no main.js:\n${result.stdout}${result.stderr}`);
  }
  copyLua(join(REPO_ROOT, "src"));
  if (result.code !== 0) {
    const first = result.stdout.split("\n").filter(Boolean).slice(0, 3).join("; ");
    const warning = `tsc reported type errors (working tree being edited?) but emitted: ${first}`;
    log(`warning: ${warning}`);
    return warning;
  }
  return undefined;
}

function copyLua(dir: string): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) copyLua(path);
    else if (name.endsWith(".lua")) {
      const target = join(BUILD_DIR, relative(join(REPO_ROOT, "src"), path));
      mkdirSync(join(target, ".."), { recursive: true });
      cpSync(path, target);
    }
  }
}

/** The command line that starts the service with this runtime. */
export function serviceCommand(runtime: ServiceRuntime): { command: string; args: string[] } {
  return runtime === "dist"
    ? { command: process.execPath, args: [join(BUILD_DIR, "main.js")] }
    : {
        command: process.execPath,
        args: ["--import", "tsx", join(REPO_ROOT, "src", "main.ts")],
      };
}
