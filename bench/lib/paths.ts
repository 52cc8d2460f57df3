/** Paths of the repository and of the benchmark's scratch directory (gitignored). */
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** Results, logs and the compiled service go here. */
export const BENCH_DIR = fileURLToPath(new URL("../../.bench/", import.meta.url));
