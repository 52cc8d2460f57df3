/**
 * A lock holder run as a child process (node --import tsx), so a test can
 * freeze it with SIGSTOP as a real client would freeze (GC pause, VM stall).
 *
 *   argv: <baseUrl> <lock name> <key> <ttl ms>
 *
 * It takes the lock, then writes `key` fenced with its token every 20 ms
 * until a line `stop` arrives on stdin. Every step is one JSON line on
 * stdout: {event: "acquired", token, expireAt} and {event: "write", seq,
 * sentAt, accepted, revision?, reason?}.
 */
import { createInterface } from "node:readline";
import { ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { KvService } from "../../src/gen/latchkey/v1/kv_pb.js";
import { LockService } from "../../src/gen/latchkey/v1/lock_pb.js";
import { connectClients } from "./clients.js";

const [baseUrl, name, key, ttl] = process.argv.slice(2) as [string, string, string, string];
const ttlMs = Number(ttl);
const clients = connectClients(baseUrl, "grpc");
const locks = clients.client(LockService);
const kv = clients.client(KvService);
const emit = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

let stopped = false;
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "stop") stopped = true;
});

const got = await locks.acquire({
  name,
  owner: "paused-holder",
  ttl: { seconds: BigInt(Math.floor(ttlMs / 1000)), nanos: (ttlMs % 1000) * 1e6 },
});
if (!got.acquired || !got.lock) {
  emit({ event: "not_acquired" });
  process.exit(1);
}
const token = got.lock.fencingToken;
const expire = got.lock.expireTime!;
emit({
  event: "acquired",
  token: Number(token),
  expireAt: Number(expire.seconds) * 1000 + expire.nanos / 1e6,
});

for (let seq = 0; !stopped; seq++) {
  const sentAt = Date.now();
  try {
    const put = await kv.put({
      key,
      value: new TextEncoder().encode(`paused-holder:${seq}`),
      fence: { lockName: name, token },
    });
    emit({
      event: "write",
      seq,
      sentAt,
      accepted: true,
      revision: Number(put.header!.revision),
    });
  } catch (error) {
    const info = error instanceof ConnectError ? error.findDetails(ErrorInfoSchema)[0] : undefined;
    emit({ event: "write", seq, sentAt, accepted: false, reason: info?.reason ?? String(error) });
  }
  await new Promise((r) => setTimeout(r, 20));
}
clients.close();
process.exit(0);
