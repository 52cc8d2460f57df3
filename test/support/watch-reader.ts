/** Reads a watch stream message by message, with timeouts, for tests. */
import { ConnectError } from "@connectrpc/connect";
import type { WatchResponse } from "../../src/gen/latchkey/v1/watch_pb.js";

export class WatchReader {
  private readonly iterator: AsyncIterator<WatchResponse>;
  private readonly abort = new AbortController();

  constructor(open: (signal: AbortSignal) => AsyncIterable<WatchResponse>) {
    this.iterator = open(this.abort.signal)[Symbol.asyncIterator]();
  }

  /** The next message, or throws on timeout / stream error. */
  async next(timeoutMs = 5000): Promise<WatchResponse> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no watch message within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      const result = await Promise.race([this.iterator.next(), timeout]);
      if (result.done) throw new Error("watch stream ended");
      return result.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The next message that carries events (skipping progress messages). */
  async nextEvents(timeoutMs = 5000): Promise<WatchResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = await this.next(Math.max(1, deadline - Date.now()));
      if (message.events.length > 0) return message;
    }
  }

  /** Collects event messages until `count` events arrived. */
  async events(count: number, timeoutMs = 5000): Promise<WatchResponse[]> {
    const messages: WatchResponse[] = [];
    let seen = 0;
    const deadline = Date.now() + timeoutMs;
    while (seen < count) {
      const message = await this.nextEvents(Math.max(1, deadline - Date.now()));
      messages.push(message);
      seen += message.events.length;
    }
    return messages;
  }

  /** Expects no event message within `ms` (progress messages are allowed). */
  async quiet(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      try {
        const message = await this.next(left);
        if (message.events.length > 0)
          throw new Error(`unexpected events at revision ${message.header?.revision}`);
      } catch (error) {
        if (error instanceof Error && error.message.startsWith("no watch message")) return;
        throw error;
      }
    }
  }

  /** Reads until the stream fails; returns the error. */
  async failure(timeoutMs = 5000): Promise<ConnectError> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.next(Math.max(1, deadline - Date.now()));
      } catch (error) {
        if (error instanceof ConnectError) return error;
        throw error;
      }
    }
  }

  close(): void {
    this.abort.abort();
  }
}
