/**
 * A workflow engine's view of Latchkey's SnapshotService: one order
 * execution that records what happens in its event log, snapshots its
 * state, checkpoints before a risky step, waits for a human approval with a
 * single-use resume token, recovers after a crash by loading the snapshot
 * and replaying only the events that follow it, and finishes with a TTL.
 *
 * Run it against a server (`npm start` serves on 127.0.0.1:7411):
 *
 *   node --import tsx examples/workflow.ts [http://127.0.0.1:7411]
 */
import { randomBytes } from "node:crypto";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ExecutionStatus, SnapshotService } from "../src/gen/latchkey/v1/snapshot_pb.js";

interface OrderState {
  order: string;
  total: number;
  paid: boolean;
  shipped: boolean;
  note?: string;
  approvedBy?: string;
}

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const parse = <T>(bytes: Uint8Array): T => JSON.parse(new TextDecoder().decode(bytes)) as T;

/** Folds one logged event into the state: the engine's deterministic replay. */
function apply(state: OrderState, type: string): OrderState {
  switch (type) {
    case "PaymentCharged":
      return { ...state, paid: true };
    case "OrderShipped":
      return { ...state, shipped: true };
    default:
      return state;
  }
}

export interface WorkflowResult {
  readonly executionId: string;
  readonly finalSequence: bigint;
  readonly status: string;
  readonly replayed: string[];
  readonly state: OrderState;
}

export async function runWorkflow(
  baseUrl: string,
  log: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
): Promise<WorkflowResult> {
  const sessions = new Http2SessionManager(baseUrl);
  const snapshots: Client<typeof SnapshotService> = createClient(
    SnapshotService,
    createGrpcTransport({ baseUrl, sessionManager: sessions }),
  );
  const id = `order-${randomBytes(4).toString("hex")}`;
  try {
    // 1. Start: log the first event, then snapshot the state it produced.
    let state: OrderState = { order: id, total: 42.5, paid: false, shipped: false };
    const placed = await snapshots.appendEvents({
      executionId: id,
      events: [{ type: "OrderPlaced", data: json({ total: state.total }) }],
      expectedLastSeq: 0n, // the log must be empty: nobody else runs this order
      idempotencyKey: `${id}:placed`, // a retried append is applied once
    });
    const saved = await snapshots.save({
      executionId: id,
      sequence: 1n,
      state: json(state),
      contentType: "application/json",
      status: ExecutionStatus.RUNNING,
      eventSeq: placed.lastSeq, // this state covers the log up to here
    });
    log(`saved ${id} at sequence ${saved.snapshot?.sequence}, event_seq ${placed.lastSeq}`);

    // 2. Charge the payment: log it, snapshot the new state, checkpoint it.
    const charged = await snapshots.appendEvents({
      executionId: id,
      events: [{ type: "PaymentCharged", data: json({ amount: state.total }) }],
      expectedLastSeq: placed.lastSeq,
    });
    state = apply(state, "PaymentCharged");
    await snapshots.save({
      executionId: id,
      sequence: 2n, // must exceed the stored sequence: a stale worker gets ABORTED
      state: json(state),
      contentType: "application/json",
      eventSeq: charged.lastSeq,
    });
    await snapshots.checkpoint({ executionId: id, name: "after-payment" });
    log(`charged: sequence 2, event_seq ${charged.lastSeq}, checkpoint "after-payment"`);

    // Another service annotates the order without reading the whole state:
    // an RFC 7396 merge patch, applied atomically on the server (sequence + 1).
    const patched = await snapshots.patch({
      executionId: id,
      mergePatch: JSON.stringify({ note: "gift wrap" }),
      expectedSequence: 2n,
    });
    log(`patched: sequence ${patched.snapshot?.sequence}`);

    // 3. Wait for a human: suspend, and hand the single-use token to the approver.
    const { resumeToken } = await snapshots.suspend({
      executionId: id,
      reason: "manager approval",
      data: json({ question: `ship order ${id}?` }),
    });
    log(`suspended; resume token ${resumeToken.slice(0, 9)}... goes to the approver`);

    // ... later, the approver's service redeems it (exactly once).
    const resumed = await snapshots.resume({ resumeToken, input: json({ approvedBy: "ada" }) });
    const approval = parse<{ approvedBy: string }>(resumed.snapshot!.input);
    log(`resumed by ${approval.approvedBy}: status ${ExecutionStatus[resumed.snapshot!.status]}`);

    // 4. Ship; the process "crashes" before it saves a new snapshot.
    await snapshots.appendEvents({
      executionId: id,
      events: [{ type: "OrderShipped", data: json({ carrier: "DHL" }) }],
      expectedLastSeq: charged.lastSeq,
    });

    // 5. Recovery on another worker: load the snapshot, replay what follows it.
    const loaded = (await snapshots.load({ executionId: id })).snapshot!;
    let recovered = parse<OrderState>(loaded.state);
    const missed = await snapshots.readEvents({ executionId: id, afterSeq: loaded.eventSeq });
    for (const event of missed.events) recovered = apply(recovered, event.type);
    recovered = { ...recovered, approvedBy: approval.approvedBy };
    log(
      `recovered from sequence ${loaded.sequence}: replayed ${missed.events.map((e) => e.type).join(", ")}`,
    );

    // 6. Finish: save the final state, completed, kept for a day.
    const done = await snapshots.save({
      executionId: id,
      sequence: loaded.sequence + 1n,
      state: json(recovered),
      contentType: "application/json",
      status: ExecutionStatus.COMPLETED,
      eventSeq: missed.lastSeq,
      ttl: { seconds: 24n * 3600n },
    });
    log(`completed at sequence ${done.snapshot?.sequence}`);
    return {
      executionId: id,
      finalSequence: done.snapshot!.sequence,
      status: ExecutionStatus[done.snapshot!.status],
      replayed: missed.events.map((e) => e.type),
      state: recovered,
    };
  } finally {
    sessions.abort();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runWorkflow(process.argv[2] ?? "http://127.0.0.1:7411").catch((error: unknown) => {
    process.stderr.write(
      `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  });
}
