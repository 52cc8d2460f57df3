/**
 * etcd v3 requests, encoded by hand with @bufbuild/protobuf's BinaryWriter
 * (field numbers of etcdserverpb, rpc.proto in etcd 3.4):
 *   RangeRequest { bytes key = 1; bytes range_end = 2; }
 *   PutRequest   { bytes key = 1; bytes value = 2; }
 *   Compare      { CompareResult result = 1; CompareTarget target = 2; bytes key = 3;
 *                  int64 version = 4 (target_union); }
 *                  CompareResult EQUAL 0, GREATER 1, LESS 2, NOT_EQUAL 3;
 *                  CompareTarget VERSION 0, CREATE 1, MOD 2, VALUE 3, LEASE 4
 *   RequestOp    { RangeRequest request_range = 1; PutRequest request_put = 2; }
 *   TxnRequest   { repeated Compare compare = 1; repeated RequestOp success = 2;
 *                  repeated RequestOp failure = 3; }
 * Answers: RangeResponse { header = 1; kvs = 2; more = 3; count = 4 },
 * TxnResponse { header = 1; succeeded = 2; responses = 3 },
 * ResponseHeader { cluster_id = 1; member_id = 2; revision = 3; raft_term = 4 }.
 */
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { grpcFrame } from "./grpc.js";

const utf8 = (s: string) => new TextEncoder().encode(s);

export const ETCD_RANGE = "/etcdserverpb.KV/Range";
export const ETCD_PUT = "/etcdserverpb.KV/Put";
export const ETCD_TXN = "/etcdserverpb.KV/Txn";

export const CompareResult = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;
export const CompareTarget = { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } as const;

function rangeRequest(key: string, rangeEnd?: string): Uint8Array {
  const w = new BinaryWriter().tag(1, 2).bytes(utf8(key));
  if (rangeEnd !== undefined) w.tag(2, 2).bytes(utf8(rangeEnd));
  return w.finish();
}

function putRequest(key: string, value: Uint8Array): Uint8Array {
  return new BinaryWriter().tag(1, 2).bytes(utf8(key)).tag(2, 2).bytes(value).finish();
}

/** Range of one key. */
export function etcdGet(key: string): Buffer {
  return grpcFrame(rangeRequest(key));
}

/** Range over [prefix, prefixEnd(prefix)): every key with the prefix. */
export function etcdPrefixRange(prefix: string): Buffer {
  return grpcFrame(rangeRequest(prefix, prefixEnd(prefix)));
}

export function etcdPut(key: string, value: Uint8Array): Buffer {
  return grpcFrame(putRequest(key, value));
}

/** Txn: if version(key) <op> version then put(key, value). */
export function etcdTxnPutIfVersion(
  key: string,
  value: Uint8Array,
  result: number,
  version: number,
): Buffer {
  const compare = new BinaryWriter()
    .tag(1, 0)
    .int32(result)
    .tag(2, 0)
    .int32(CompareTarget.VERSION)
    .tag(3, 2)
    .bytes(utf8(key))
    .tag(4, 0)
    .int64(version)
    .finish();
  const op = new BinaryWriter().tag(2, 2).bytes(putRequest(key, value)).finish();
  return grpcFrame(new BinaryWriter().tag(1, 2).bytes(compare).tag(2, 2).bytes(op).finish());
}

/** etcd's range end for a prefix: the prefix with its last byte incremented. */
export function prefixEnd(prefix: string): string {
  const bytes = utf8(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]! += 1;
      return new TextDecoder().decode(end);
    }
  }
  return "\0";
}
