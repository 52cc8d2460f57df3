/**
 * KvService handlers: proto in, domain call, proto out. Validation and
 * errors are the domain's (core/kv.ts); conversions are in convert.ts.
 */
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { DeleteInput, Kv, PutInput, RangeInput, TxnInputOp, TxnOutputOp } from "../core/kv.js";
import type { CompareOperator, CompareTarget, Compare as CoreCompare } from "../core/model.js";
import { argumentError } from "../core/validate.js";
import {
  type Compare,
  Compare_Operator,
  type DeleteRequest,
  type KvService,
  type PutRequest,
  type RangeRequest,
  type RequestOp,
} from "../gen/latchkey/v1/kv_pb.js";
import { durationMs, fromFence, fromPrecondition, header, int64, toKeyValue } from "./convert.js";
import { tenantOf } from "./pipeline.js";

export function createKvService(kv: Kv): ServiceImpl<typeof KvService> {
  return {
    async get(req, ctx) {
      const { kv: found, revision } = await kv.get(tenantOf(ctx), req.key);
      return { header: header(revision), kv: found && toKeyValue(found) };
    },

    async batchGet(req, ctx) {
      const { kvs, revision } = await kv.batchGet(tenantOf(ctx), req.keys);
      return { header: header(revision), kvs: kvs.map(toKeyValue) };
    },

    async range(req, ctx) {
      const out = await kv.range(tenantOf(ctx), rangeInput(req, ""));
      return {
        header: header(out.revision),
        kvs: out.kvs.map(toKeyValue),
        count: BigInt(out.count),
        nextPageToken: out.nextPageToken,
      };
    },

    async put(req, ctx) {
      const out = await kv.put(tenantOf(ctx), putInput(req, ""));
      return {
        header: header(out.revision),
        kv: toKeyValue(out.kv),
        prevKv: out.prevKv && toKeyValue(out.prevKv),
      };
    },

    async delete(req, ctx) {
      const out = await kv.delete(tenantOf(ctx), deleteInput(req, ""));
      return {
        header: header(out.revision),
        deleted: BigInt(out.deleted),
        prevKvs: out.prevKvs.map(toKeyValue),
      };
    },

    async txn(req, ctx: HandlerContext) {
      const out = await kv.txn(tenantOf(ctx), {
        compares: req.compare.map((c, i) => compareInput(c, `compare[${i}]`)),
        success: req.success.map((op, i) => opInput(op, `success[${i}]`)),
        failure: req.failure.map((op, i) => opInput(op, `failure[${i}]`)),
        fence: fromFence(req.fence, "fence"),
      });
      return {
        header: header(out.revision),
        succeeded: out.succeeded,
        responses: out.results.map(responseOp),
      };
    },
  };
}

function putInput(req: PutRequest, at: string): PutInput {
  return {
    key: req.key,
    value: req.value,
    ttlMs: durationMs(req.ttl, `${at}ttl`),
    leaseId: int64(req.leaseId, `${at}lease_id`),
    precondition: fromPrecondition(req.precondition, `${at}precondition`),
    fence: fromFence(req.fence, `${at}fence`),
    prevKv: req.prevKv,
  };
}

function deleteInput(req: DeleteRequest, at: string): DeleteInput {
  return {
    key: req.key,
    prefix: req.prefix,
    precondition: fromPrecondition(req.precondition, `${at}precondition`),
    fence: fromFence(req.fence, `${at}fence`),
    prevKv: req.prevKv,
  };
}

function rangeInput(req: RangeRequest, at: string): RangeInput {
  return {
    prefix: req.prefix,
    start: req.start,
    end: req.end,
    limit: int64(req.limit, `${at}limit`),
    pageToken: req.pageToken,
    keysOnly: req.keysOnly,
    countOnly: req.countOnly,
  };
}

function opInput(op: RequestOp, at: string): TxnInputOp {
  const r = op.request;
  switch (r.case) {
    case "put":
      return { kind: "put", put: putInput(r.value, `${at}.put.`) };
    case "delete":
      return { kind: "delete", delete: deleteInput(r.value, `${at}.delete.`) };
    case "get":
      return { kind: "get", key: r.value.key };
    case "range":
      return { kind: "range", range: rangeInput(r.value, `${at}.range.`) };
    case undefined:
      throw argumentError(at, `${at} sets no operation`);
  }
}

const OPERATORS: Record<Compare_Operator, CompareOperator | undefined> = {
  [Compare_Operator.OPERATOR_UNSPECIFIED]: "equal",
  [Compare_Operator.EQUAL]: "equal",
  [Compare_Operator.NOT_EQUAL]: "not_equal",
  [Compare_Operator.GREATER]: "greater",
  [Compare_Operator.LESS]: "less",
};

function compareInput(c: Compare, at: string): CoreCompare {
  const operator = OPERATORS[c.operator];
  if (operator === undefined)
    throw argumentError(`${at}.operator`, `${at}.operator ${c.operator} is not a known operator`);
  const t = c.target;
  let target: CompareTarget;
  switch (t.case) {
    case "version":
    case "modRevision":
    case "createRevision":
    case "leaseId": {
      const kind = (
        {
          version: "version",
          modRevision: "mod_revision",
          createRevision: "create_revision",
          leaseId: "lease_id",
        } as const
      )[t.case];
      target = { kind, value: int64(t.value, `${at}.${kind}`) };
      break;
    }
    case "value":
      target = { kind: "value", value: t.value };
      break;
    case "exists":
      target = { kind: "exists", value: t.value };
      break;
    case undefined:
      throw argumentError(
        `${at}.target`,
        `${at} sets no target (version, mod_revision, create_revision, value, exists or lease_id)`,
      );
  }
  return { key: c.key, operator, target };
}

function responseOp(result: TxnOutputOp) {
  switch (result.kind) {
    case "put":
      return {
        response: {
          case: "put" as const,
          value: { kv: toKeyValue(result.kv), prevKv: result.prevKv && toKeyValue(result.prevKv) },
        },
      };
    case "delete":
      return {
        response: {
          case: "delete" as const,
          value: { deleted: BigInt(result.deleted), prevKvs: result.prevKvs.map(toKeyValue) },
        },
      };
    case "get":
      return {
        response: { case: "get" as const, value: { kv: result.kv && toKeyValue(result.kv) } },
      };
    case "range":
      return {
        response: {
          case: "range" as const,
          value: {
            kvs: result.range.kvs.map(toKeyValue),
            count: BigInt(result.range.count),
            nextPageToken: result.nextPageToken,
          },
        },
      };
  }
}
