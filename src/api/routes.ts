/**
 * The served services, each wrapped in the call pipeline. Both protocol
 * paths (Connect's adapter and the lean gRPC path) serve this one list.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import type { Kv } from "../core/kv.js";
import type { Leases } from "../core/leases.js";
import type { Locks } from "../core/locks.js";
import type { Snapshots } from "../core/snapshots.js";
import type { Watches } from "../core/watches.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ServerReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { KvService } from "../gen/latchkey/v1/kv_pb.js";
import { LeaseService } from "../gen/latchkey/v1/lease_pb.js";
import { LockService } from "../gen/latchkey/v1/lock_pb.js";
import { SnapshotService } from "../gen/latchkey/v1/snapshot_pb.js";
import { WatchService } from "../gen/latchkey/v1/watch_pb.js";
import type { Role } from "./auth.js";
import { createHealthService, type HealthMonitor } from "./health-service.js";
import { createKvService } from "./kv-service.js";
import { createLeaseService } from "./lease-service.js";
import { createLockService } from "./lock-service.js";
import { guardService, type PipelineOptions } from "./pipeline.js";
import { createReflectionServices } from "./reflection-service.js";
import { createSnapshotService } from "./snapshot-service.js";
import { createWatchService } from "./watch-service.js";

/** A service and its (guarded) implementation. */
export interface ServedService {
  readonly service: DescService;
  readonly impl: ServiceImpl<DescService>;
}

export interface Domain {
  readonly kv: Kv;
  readonly watches: Watches;
  readonly leases: Leases;
  readonly locks: Locks;
  readonly snapshots: Snapshots;
}

/** Methods that only read; every other Latchkey method needs the write role. */
const READ_METHODS = new Set([
  "latchkey.v1.KvService/Get",
  "latchkey.v1.KvService/BatchGet",
  "latchkey.v1.KvService/Range",
  "latchkey.v1.WatchService/Watch",
  "latchkey.v1.LeaseService/TimeToLive",
  "latchkey.v1.LeaseService/List",
  "latchkey.v1.LockService/Describe",
  "latchkey.v1.LockService/List",
  "latchkey.v1.SnapshotService/Load",
  "latchkey.v1.SnapshotService/List",
  "latchkey.v1.SnapshotService/ListCheckpoints",
  "latchkey.v1.SnapshotService/ReadEvents",
]);

export function roleOf(method: DescMethod): Role | undefined {
  if (!method.parent.typeName.startsWith("latchkey.")) return undefined;
  return READ_METHODS.has(`${method.parent.typeName}/${method.name}`) ? "read" : "write";
}

export function latchkeyServices(domain: Domain, pipeline: PipelineOptions): ServedService[] {
  const served = <S extends DescService>(service: S, impl: ServiceImpl<S>): ServedService => ({
    service,
    impl: guardService(service, impl, pipeline) as unknown as ServiceImpl<DescService>,
  });
  return [
    served(KvService, createKvService(domain.kv)),
    served(WatchService, createWatchService(domain.watches)),
    served(LeaseService, createLeaseService(domain.leases)),
    served(LockService, createLockService(domain.locks, pipeline)),
    served(SnapshotService, createSnapshotService(domain.snapshots)),
  ];
}

/**
 * The operational services, guarded by the same pipeline (roleOf gives them
 * no role, so no auth): grpc.health.v1.Health and server reflection v1 and
 * v1alpha, describing `served` and themselves.
 */
export function operationalServices(
  served: readonly ServedService[],
  health: HealthMonitor,
  pipeline: PipelineOptions,
): ServedService[] {
  const guard = <S extends DescService>(service: S, impl: ServiceImpl<S>): ServedService => ({
    service,
    impl: guardService(service, impl, pipeline) as unknown as ServiceImpl<DescService>,
  });
  const reflection = createReflectionServices([
    ...served.map((s) => s.service),
    Health,
    ServerReflectionV1,
    ServerReflectionV1alpha,
  ]);
  return [
    guard(Health, createHealthService(health)),
    guard(ServerReflectionV1, reflection.v1),
    guard(ServerReflectionV1alpha, reflection.v1alpha),
  ];
}

/** Registers services on a Connect router. */
export function registerRoutes(router: ConnectRouter, services: readonly ServedService[]): void {
  for (const { service, impl } of services) router.service(service, impl);
}
