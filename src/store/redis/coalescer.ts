/**
 * Coalesces calls made in one event-loop turn into one Redis round trip:
 * calls queue per group (a tenant) and the whole queue goes out in one
 * script call at the end of the turn (setImmediate: after the I/O phase, so
 * every request read from the sockets in this turn joins). Under load this
 * turns dozens of EVALSHA calls, each a syscall, a Redis wake-up and a reply
 * parse, into one; alone, a call waits only for the end of its turn.
 */
export class Coalescer<Item, Result> {
  private readonly queues = new Map<
    string,
    { items: Item[]; waiters: PromiseWithResolvers<Result>[] }
  >();
  private scheduled = false;

  constructor(
    /** Runs one group's items in one call; returns one result per item, in order. */
    private readonly run: (group: string, items: Item[]) => Promise<Result[]>,
    /** A group flushes early once it holds this many items. */
    private readonly maxItems: number,
  ) {}

  add(group: string, item: Item): Promise<Result> {
    let queue = this.queues.get(group);
    if (!queue) {
      queue = { items: [], waiters: [] };
      this.queues.set(group, queue);
    }
    const waiter = withResolvers<Result>();
    queue.items.push(item);
    queue.waiters.push(waiter);
    if (queue.items.length >= this.maxItems) {
      this.queues.delete(group);
      this.flush(group, queue.items, queue.waiters);
    } else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flushAll());
    }
    return waiter.promise;
  }

  private flushAll(): void {
    this.scheduled = false;
    const queues = [...this.queues];
    this.queues.clear();
    for (const [group, queue] of queues) this.flush(group, queue.items, queue.waiters);
  }

  private flush(group: string, items: Item[], waiters: PromiseWithResolvers<Result>[]): void {
    this.run(group, items).then(
      (results) => {
        for (const [i, waiter] of waiters.entries()) waiter.resolve(results[i]!);
      },
      (error: unknown) => {
        for (const waiter of waiters) waiter.reject(error);
      },
    );
  }
}

interface PromiseWithResolvers<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

/** Promise.withResolvers, which Node 20 lacks. */
function withResolvers<T>(): PromiseWithResolvers<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
