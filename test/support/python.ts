/**
 * Python grpcio clients for the polyglot tests: Debian's python3-grpcio and
 * python3-grpc-tools under /usr/bin/python3 (not a pyenv shim that cannot
 * see Debian's modules). Stubs are generated at test time. Debian's protoc
 * (3.6) knows no proto3 `optional`, so google/rpc/error_details.proto is
 * replaced by ErrorInfo alone (same package, name and field numbers).
 */
import { execFile, execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

export const PYTHON = "/usr/bin/python3";
const run = promisify(execFile);

/** Whether /usr/bin/python3 has grpc and grpc_tools; says how to get them when not. */
export function pythonGrpcAvailable(suite: string): boolean {
  try {
    execFileSync(PYTHON, ["-c", "import grpc, grpc_tools"], { stdio: "ignore" });
    return true;
  } catch {
    process.stderr.write(
      `${suite}: skipped: /usr/bin/python3 lacks grpc (apt-get install python3-grpcio python3-grpc-tools)\n`,
    );
    return false;
  }
}

/**
 * Generates Python stubs for `protos` (paths under proto/), plus
 * google/rpc/status.proto and error_info.proto; `withHealth` adds
 * grpc.health.v1 under the module path `lkhealth` (so it does not shadow the
 * `grpc` package). Returns the folder to put on sys.path.
 */
export async function generatePythonStubs(
  protos: readonly string[],
  withHealth = false,
): Promise<string> {
  const work = mkdtempSync(join(tmpdir(), "latchkey-py-"));
  const gen = join(work, "gen");
  const extra = join(work, "protos");
  mkdirSync(gen);
  mkdirSync(join(extra, "google/rpc"), { recursive: true });
  copyFileSync("proto/google/rpc/status.proto", join(extra, "google/rpc/status.proto"));
  writeFileSync(
    join(extra, "google/rpc/error_info.proto"),
    'syntax = "proto3";\npackage google.rpc;\n' +
      "message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }\n",
  );
  const files = [...protos, "google/rpc/status.proto", "google/rpc/error_info.proto"];
  if (withHealth) {
    mkdirSync(join(extra, "lkhealth"));
    copyFileSync("proto/grpc/health/v1/health.proto", join(extra, "lkhealth/health.proto"));
    files.push("lkhealth/health.proto");
  }
  await run(
    PYTHON,
    [
      "-m",
      "grpc_tools.protoc",
      "-Iproto",
      `-I${extra}`,
      `--python_out=${gen}`,
      `--grpc_python_out=${gen}`,
      ...files,
    ],
    { timeout: 30_000 },
  );
  return gen;
}

/** Runs a client script that prints one JSON object per step ({"step": ...}); returns the steps by name. */
export async function runPythonSteps(
  script: string,
  args: readonly string[],
): Promise<Record<string, Record<string, unknown>>> {
  const { stdout } = await run(PYTHON, [script, ...args], { timeout: 30_000 });
  return Object.fromEntries(
    stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { step: string })
      .map((s) => [s.step, s]),
  );
}
