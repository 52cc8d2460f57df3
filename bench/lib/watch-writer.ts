/**
 * The writer of the fan-out benchmark (a process on the load core): Puts at
 * a steady rate, open loop (writes are issued on schedule whatever the
 * answers; at most MAX_IN_FLIGHT outstanding, beyond that the schedule
 * slips and the achieved rate shows it), round-robin over the target keys.
 * Each value carries the send time (8 bytes, ns of the machine-wide
 * monotonic clock) and a sequence number; each ack's revision and time are
 * returned so watchers' receipts can be joined to them.
 *
 * IPC: {type:"run", url, keys[], rate, warmupSeconds, durationSeconds} ->
 *      {type:"done", ...WriterResult}
 */
import http2 from "node:http2";
import { PutRequestSchema } from "../../src/gen/latchkey/v1/kv_pb.js";
import { encodeFramed, FrameSplitter, readNestedVarint } from "./grpc.js";

export interface WriterRun {
  readonly type: "run";
  readonly url: string;
  readonly keys: readonly string[];
  /** Writes per second. */
  readonly rate: number;
  readonly warmupSeconds: number;
  readonly durationSeconds: number;
}

export interface WriterResult {
  readonly type: "done";
  /** [revision, sendUs, ackUs, key index] of every acknowledged write. */
  readonly writes: [number, number, number, number][];
  readonly windowStartUs: number;
  readonly windowEndUs: number;
  readonly sent: number;
  readonly errors: Record<string, number>;
  /** Writes not sent on schedule because MAX_IN_FLIGHT were outstanding. */
  readonly skipped: number;
  readonly cpuMs: number;
}

const MAX_IN_FLIGHT = 1000;
const nowNs = () => process.hrtime.bigint();

async function run(msg: WriterRun): Promise<WriterResult> {
  const session = http2.connect(msg.url);
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  const writes: [number, number, number, number][] = [];
  const errors: Record<string, number> = {};
  let sent = 0;
  let skipped = 0;
  let inFlight = 0;
  const value = Buffer.alloc(16);

  const send = (seq: number) => {
    const keyIndex = seq % msg.keys.length;
    const sendNs = nowNs();
    value.writeBigUInt64BE(sendNs, 0);
    value.writeBigUInt64BE(BigInt(seq), 8);
    const body = encodeFramed(PutRequestSchema, { key: msg.keys[keyIndex]!, value });
    const stream = session.request({
      ":method": "POST",
      ":path": "/latchkey.v1.KvService/Put",
      "content-type": "application/grpc",
      te: "trailers",
    });
    inFlight++;
    sent++;
    let revision = 0;
    let ackNs = 0n;
    let status = "?";
    const splitter = new FrameSplitter();
    stream.on("data", (chunk: Buffer) => {
      splitter.push(chunk, (m) => {
        ackNs = nowNs();
        revision = readNestedVarint(m, 1, 1);
      });
    });
    const onStatus = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    };
    stream.on("response", onStatus);
    stream.on("trailers", onStatus);
    stream.on("error", () => {
      status = "stream-error";
    });
    stream.on("close", () => {
      inFlight--;
      if (status === "0" && revision > 0) {
        writes.push([revision, Number(sendNs / 1000n), Number(ackNs / 1000n), keyIndex]);
      } else errors[status] = (errors[status] ?? 0) + 1;
    });
    stream.end(body);
  };

  const cpu0 = process.cpuUsage();
  const startNs = nowNs();
  const totalSeconds = msg.warmupSeconds + msg.durationSeconds;
  const due = (ns: bigint) => Math.floor((Number(ns - startNs) / 1e9) * msg.rate);
  const last = Math.floor(totalSeconds * msg.rate);
  let seq = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const target = Math.min(last, due(nowNs()));
      while (seq < target) {
        if (inFlight >= MAX_IN_FLIGHT) {
          skipped += target - seq;
          seq = target;
          break;
        }
        send(seq++);
      }
      if (seq >= last) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  // Let the last answers arrive.
  const deadline = Date.now() + 10_000;
  while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  session.close();
  const cpu = process.cpuUsage(cpu0);
  const startUs = Number(startNs / 1000n);
  return {
    type: "done",
    writes,
    windowStartUs: startUs + msg.warmupSeconds * 1e6,
    windowEndUs: startUs + totalSeconds * 1e6,
    sent,
    errors,
    skipped,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

process.on("message", (msg: { type: string }) => {
  if (msg.type === "run") {
    run(msg as WriterRun).then(
      (result) => process.send?.(result),
      (error: unknown) => process.send?.({ type: "error", message: String(error) }),
    );
  }
});
process.on("disconnect", () => process.exit(0));
