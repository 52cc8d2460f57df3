/**
 * Entry point: configuration, server, signals. SIGTERM and SIGINT drain the
 * server and exit 0.
 */
import { pino } from "pino";
import { ConfigError, loadConfig } from "./config.js";
import { createServer } from "./server.js";

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`latchkey: configuration error: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = pino({ level: config.logLevel, base: { service: "latchkey" } });
  const server = createServer(config, logger);
  try {
    await server.start();
  } catch (error) {
    logger.fatal({ err: error }, "latchkey failed to start");
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "draining");
    // A backend that never closes must not keep the process alive forever.
    setTimeout(() => {
      logger.error("drain did not finish in time: exiting");
      process.exit(1);
    }, config.server.shutdownGraceMs + 15_000).unref();
    server.close().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "unclean shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

void main();
