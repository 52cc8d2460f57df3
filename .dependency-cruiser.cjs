/** The dependency rule of the architecture: every arrow points in toward core/. */
module.exports = {
  forbidden: [
    {
      name: "core-is-pure",
      comment:
        "core/ imports only core/ and Node built-ins: no transport, no Redis, no generated code.",
      severity: "error",
      from: { path: "^src/core/" },
      to: {
        pathNot: ["^src/core/", "^node:", "^(crypto|zlib|util|events|timers)$"],
        dependencyTypesNot: ["core"],
      },
    },
    {
      name: "core-no-npm",
      comment: "core/ uses no npm package.",
      severity: "error",
      from: { path: "^src/core/" },
      to: { dependencyTypes: ["npm", "npm-dev", "npm-optional", "npm-peer"] },
    },
    {
      name: "api-not-adapters",
      comment: "api/ talks to the domain, never to store/, lock/ or watch/ adapters or to ioredis.",
      severity: "error",
      from: { path: "^src/api/" },
      to: { path: ["^src/store/", "^src/lock/", "^src/watch/", "ioredis"] },
    },
    {
      name: "adapters-not-api",
      comment:
        "store/, lock/ and watch/ implement core ports; they never import api/, gen/ or transport/.",
      severity: "error",
      from: { path: "^src/(store|lock|watch)/" },
      to: { path: ["^src/api/", "^src/gen/", "^src/transport/", "@connectrpc"] },
    },
    {
      name: "only-server-wires",
      comment: "Only server.ts constructs adapters.",
      severity: "error",
      from: { path: "^src/", pathNot: ["^src/server\\.ts$", "^src/(store|lock|watch)/"] },
      to: { path: "^src/(store|lock|watch)/" },
    },
    { name: "no-circular", severity: "error", from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default"],
    },
  },
};
