/**
 * Vitest globalSetup: one shared redis-server for the whole run (tests
 * isolate themselves with a unique key prefix). REDIS_URL, when set, is used
 * instead of spawning. Tests that kill or restart Redis spawn their own.
 */
import type {} from "vitest";
import type { TestProject } from "vitest/node";
import { type RedisProcess, startRedis } from "./redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

let shared: RedisProcess | undefined;

export async function setup(project: TestProject): Promise<void> {
  const url = process.env.REDIS_URL;
  if (url) {
    project.provide("redisUrl", url);
    return;
  }
  shared = await startRedis();
  project.provide("redisUrl", shared.url);
}

export async function teardown(): Promise<void> {
  await shared?.stop();
}
