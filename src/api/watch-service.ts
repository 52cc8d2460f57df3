/**
 * WatchService: a server stream of change messages. A message the hub
 * shares with a group of watchers becomes one frozen WatchResponse (cached
 * per message object), so the lean gRPC path can also encode it once for
 * the whole group (it caches the frames of frozen messages).
 *
 * The stream is a mapping iterator over the hub's, not an async generator:
 * at thousands of deliveries a second a generator layer (its queue, awaits
 * and result objects per message) is a measurable share of the GC work.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { WatchMessage } from "../core/ports.js";
import type { Watches } from "../core/watches.js";
import {
  type WatchResponse,
  WatchResponseSchema,
  type WatchService,
} from "../gen/latchkey/v1/watch_pb.js";
import { fromEventKind, header, int64, toEvent } from "./convert.js";
import { tenantOf } from "./pipeline.js";

type WatchResponseInit = MessageInitShape<typeof WatchResponseSchema>;
type Result = IteratorResult<WatchResponse | WatchResponseInit, undefined>;

const DONE: Result = Object.freeze({ value: undefined, done: true });

export function createWatchService(watches: Watches): ServiceImpl<typeof WatchService> {
  /** Per shared message: its response, as the iterator result every watcher of the group gets. */
  const converted = new WeakMap<WatchMessage, Result>();
  const toResult = (next: IteratorResult<WatchMessage>): Result => {
    if (next.done) return DONE;
    const message = next.value;
    // Progress messages are built per watcher: nothing to share.
    if (message.kind === "progress") {
      return { value: { header: header(message.revision), events: [] }, done: false };
    }
    let result = converted.get(message);
    if (!result) {
      // Frozen: immutable from here on, which is what lets a transport cache its encoding.
      const response = Object.freeze(
        create(WatchResponseSchema, {
          header: header(message.revision),
          events: message.events.map(toEvent),
        }),
      );
      result = Object.freeze({ value: response, done: false });
      converted.set(message, result);
    }
    return result;
  };

  return {
    watch(req, ctx) {
      const watch = watches.watch(
        tenantOf(ctx),
        {
          key: req.key,
          prefix: req.prefix,
          startRevision: int64(req.startRevision, "start_revision"),
          kinds: req.kinds.map((kind, i) => fromEventKind(kind, `kinds[${i}]`)),
          prevKv: req.prevKv,
          progressNotify: req.progressNotify,
        },
        ctx.signal,
      );
      const messages = watch[Symbol.asyncIterator]();
      const stream: AsyncIterableIterator<WatchResponse | WatchResponseInit, undefined> = {
        [Symbol.asyncIterator]: () => stream,
        next: () => messages.next().then(toResult),
        return: async () => {
          await messages.return?.();
          return DONE;
        },
      };
      return stream;
    },
  };
}
