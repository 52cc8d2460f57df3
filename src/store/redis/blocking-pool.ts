/**
 * Dedicated connections for blocking reads (XREAD BLOCK): a blocked
 * connection serves nothing else, so each concurrent blocking read borrows
 * one. Idle connections are kept up to a small number and reused; a read is
 * cut short with CLIENT UNBLOCK (sent on the main connection) rather than by
 * dropping its connection.
 */
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { RedisSettings } from "../../config.js";
import { createRedisClient } from "./redis-client.js";

/** Idle blocking connections kept for reuse. */
const MAX_IDLE = 4;

export interface BlockingConnection {
  readonly client: Redis;
  /** CLIENT ID of the connection, for CLIENT UNBLOCK. */
  readonly id: number;
}

export class BlockingPool {
  private readonly idle: BlockingConnection[] = [];
  private readonly busy = new Set<BlockingConnection>();
  private closed = false;

  constructor(
    private readonly settings: RedisSettings,
    private readonly url: string,
    private readonly logger: Logger,
  ) {}

  /** A connected connection for one blocking read; give it back with `release`. */
  async acquire(): Promise<BlockingConnection> {
    if (this.closed) throw new Error("blocking pool closed");
    let conn = this.idle.pop();
    while (conn && conn.client.status !== "ready") {
      conn.client.disconnect();
      conn = this.idle.pop();
    }
    if (!conn) {
      const client = createRedisClient(this.settings, this.url, this.logger, "latchkey-feed", {
        blocking: true,
      });
      try {
        await client.connect();
        const id = (await client.client("ID")) as number;
        conn = { client, id };
      } catch (error) {
        client.disconnect();
        throw error;
      }
    }
    this.busy.add(conn);
    return conn;
  }

  /** Returns a connection; a broken one (or any after close) is dropped. */
  release(conn: BlockingConnection, broken = false): void {
    this.busy.delete(conn);
    if (broken || this.closed || conn.client.status !== "ready" || this.idle.length >= MAX_IDLE) {
      conn.client.disconnect();
      return;
    }
    this.idle.push(conn);
  }

  close(): void {
    this.closed = true;
    for (const conn of [...this.idle, ...this.busy]) conn.client.disconnect();
    this.idle.length = 0;
    this.busy.clear();
  }
}
