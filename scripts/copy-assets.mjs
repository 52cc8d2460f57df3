// Copies non-TypeScript runtime assets (Lua scripts) from src/ into dist/.
import { cpSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function copyLua(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) copyLua(path);
    else if (name.endsWith(".lua")) cpSync(path, path.replace(/^src/, "dist"));
  }
}
copyLua("src");
