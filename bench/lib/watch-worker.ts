/**
 * A watcher process of the fan-out benchmark (run pinned to the load core,
 * several at once): opens many Watch streams over a few HTTP/2 connections,
 * timestamps every event on arrival with the machine-wide monotonic clock
 * (process.hrtime = CLOCK_MONOTONIC, the same clock in every process), and
 * keeps (revision, send time, receipt time) per delivery. At the end the
 * parent hands over the writer's ack times and gets back latency histograms.
 *
 * Parsing is hand-rolled over the wire format (header.revision, and each
 * event's kv.value, whose first 8 bytes are the writer's send time in ns) so
 * the receiving side costs little per event.
 *
 * IPC protocol (parent -> worker / worker -> parent):
 *   {type:"start", url, prefixes[], streamsPerConnection} -> {type:"ready", established, failed, ms, cpuMs}
 *   {type:"count"}                                     -> {type:"count", received}
 *   {type:"finish", acks:[revision, ackUs][]}           -> {type:"result", ...WorkerResult}
 */
import http2 from "node:http2";
import { WatchRequestSchema } from "../../src/gen/latchkey/v1/watch_pb.js";
import { encodeFramed, FrameSplitter, WireReader } from "./grpc.js";
import { LogHistogram } from "./stats.js";

export interface WorkerStart {
  readonly type: "start";
  readonly url: string;
  /** One entry per watcher: the prefix it watches. */
  readonly prefixes: readonly string[];
  readonly streamsPerConnection: number;
}

export interface WorkerResult {
  readonly type: "result";
  /** Deliveries of writes named in `acks`. */
  readonly deliveries: number;
  /** ack -> receipt, us, of the events that arrived after the ack (the others are counted in `beforeAck`). */
  readonly ackToReceipt: ReturnType<LogHistogram["toJSON"]>;
  /** send -> receipt, us. */
  readonly sendToReceipt: ReturnType<LogHistogram["toJSON"]>;
  readonly beforeAck: number;
  /** Events whose revision did not increase on their stream (must be 0). */
  readonly outOfOrder: number;
  /** Streams that ended, by grpc-status (anything here is a failure). */
  readonly ended: Record<string, number>;
  readonly cpuMs: number;
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

let revs = new Float64Array(1 << 16);
let sends = new Float64Array(1 << 16);
let recvs = new Float64Array(1 << 16);
let count = 0;
let outOfOrder = 0;
const ended: Record<string, number> = {};

function grow(): void {
  const size = revs.length * 2;
  const r = new Float64Array(size);
  r.set(revs);
  revs = r;
  const s = new Float64Array(size);
  s.set(sends);
  sends = s;
  const v = new Float64Array(size);
  v.set(recvs);
  recvs = v;
}

/** Reads one WatchResponse: records every event (revision, send time from the value). */
function onMessage(message: Buffer, receivedUs: number, last: { revision: number }): void {
  const r = new WireReader(message);
  let revision = 0;
  let eventsStart = -1;
  while (!r.done) {
    const at = r.pos;
    const [field, wire] = r.tag();
    if (field === 1 && wire === 2) {
      const [s, e] = r.bytes();
      const h = new WireReader(message, s, e);
      while (!h.done) {
        const [f, w] = h.tag();
        if (f === 1 && w === 0) revision = h.varint();
        else h.skip(w);
      }
    } else if (field === 2 && wire === 2) {
      if (eventsStart < 0) eventsStart = at;
      r.bytes();
    } else r.skip(wire);
  }
  if (eventsStart < 0) return; // progress message
  if (revision <= last.revision) outOfOrder++;
  last.revision = revision;
  // Walk the events again: Event.kv (2) -> KeyValue.value (2).
  r.pos = eventsStart;
  while (!r.done) {
    const [field, wire] = r.tag();
    if (field !== 2 || wire !== 2) {
      r.skip(wire);
      continue;
    }
    const [es, ee] = r.bytes();
    const ev = new WireReader(message, es, ee);
    while (!ev.done) {
      const [f, w] = ev.tag();
      if (f === 2 && w === 2) {
        const [ks, ke] = ev.bytes();
        const kv = new WireReader(message, ks, ke);
        while (!kv.done) {
          const [kf, kw] = kv.tag();
          if (kf === 2 && kw === 2) {
            const [vs, ve] = kv.bytes();
            if (ve - vs >= 8) {
              if (count === revs.length) grow();
              revs[count] = revision;
              sends[count] = Number(message.readBigUInt64BE(vs) / 1000n);
              recvs[count] = receivedUs;
              count++;
            }
          } else kv.skip(kw);
        }
      } else ev.skip(w);
    }
  }
}

async function start(msg: WorkerStart): Promise<void> {
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const sessions: http2.ClientHttp2Session[] = [];
  let established = 0;
  let failed = 0;
  const total = msg.prefixes.length;
  let reported = false;
  const report = () => {
    if (reported || established + failed < total) return;
    reported = true;
    const cpu = process.cpuUsage(cpu0);
    process.send?.({
      type: "ready",
      established,
      failed,
      ms: Date.now() - t0,
      cpuMs: (cpu.user + cpu.system) / 1000,
    });
  };
  msg.prefixes.forEach((prefix, i) => {
    const c = Math.floor(i / msg.streamsPerConnection);
    let session = sessions[c];
    if (!session) {
      session = http2.connect(msg.url, { settings: { initialWindowSize: 1 << 20 } });
      session.on("error", () => {});
      // Connection-level window: room for many streams' events at once.
      session.on("connect", (s) => s.setLocalWindowSize(16 << 20));
      sessions[c] = session;
    }
    const stream = session.request({
      ":method": "POST",
      ":path": "/latchkey.v1.WatchService/Watch",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const splitter = new FrameSplitter();
    const last = { revision: 0 };
    let first = true;
    const onTrailers = (h: http2.IncomingHttpHeaders) => {
      const status = String(h["grpc-status"] ?? "?");
      ended[status] = (ended[status] ?? 0) + 1;
    };
    stream.on("response", (h) => {
      if (h["grpc-status"] !== undefined) onTrailers(h); // trailers-only error
    });
    stream.on("trailers", onTrailers);
    stream.on("data", (chunk: Buffer) => {
      const at = nowUs();
      splitter.push(chunk, (m) => {
        if (first) {
          first = false;
          established++;
          report();
        }
        onMessage(m, at, last);
      });
    });
    stream.on("error", () => {
      ended.error = (ended.error ?? 0) + 1;
    });
    stream.on("close", () => {
      if (first) {
        first = false;
        failed++;
        report();
      }
    });
    stream.end(encodeFramed(WatchRequestSchema, { prefix }));
  });
}

function finish(acks: readonly (readonly [number, number])[]): WorkerResult {
  const ackOf = new Map<number, number>(acks.map(([rev, ack]) => [rev, ack]));
  const ackToReceipt = new LogHistogram();
  const sendToReceipt = new LogHistogram();
  let deliveries = 0;
  let beforeAck = 0;
  for (let i = 0; i < count; i++) {
    const ack = ackOf.get(revs[i]!);
    if (ack === undefined) continue;
    deliveries++;
    const fromAck = recvs[i]! - ack;
    if (fromAck < 0) beforeAck++;
    else ackToReceipt.record(fromAck);
    sendToReceipt.record(recvs[i]! - sends[i]!);
  }
  const cpu = process.cpuUsage();
  return {
    type: "result",
    deliveries,
    ackToReceipt: ackToReceipt.toJSON(),
    sendToReceipt: sendToReceipt.toJSON(),
    beforeAck,
    outOfOrder,
    ended,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

process.on("message", (msg: { type: string } & Record<string, unknown>) => {
  if (msg.type === "start") void start(msg as unknown as WorkerStart);
  else if (msg.type === "count") process.send?.({ type: "count", received: count });
  else if (msg.type === "finish") {
    process.send?.(finish(msg.acks as [number, number][]));
  }
});
process.on("disconnect", () => process.exit(0));
