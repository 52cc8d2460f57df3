"""Latchkey watches, leases and locks on Python grpcio (Debian's python3-grpcio).

Usage: lock_watch_client.py <host:port> <dir of generated stubs>

The stubs are those python-interop.test.ts generates (latchkey/v1 common,
kv, watch, lease and lock; google/rpc status and error_info).

Prints one JSON object per line, one per step: a prefix watch (a server
stream) that sees a put made while it is open; a lease kept alive over a
bidi KeepAlive stream, then revoked with the key put under it; a lock taken,
refused to another owner, used as a fence, released, taken again, and the
old token refused FENCE_STALE.
"""
import os
import sys
import threading

import grpc

sys.path.insert(0, sys.argv[2])
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))

from google.protobuf import duration_pb2  # noqa: E402
from latchkey.v1 import common_pb2, kv_pb2, kv_pb2_grpc  # noqa: E402
from latchkey.v1 import lease_pb2, lease_pb2_grpc  # noqa: E402
from latchkey.v1 import lock_pb2, lock_pb2_grpc  # noqa: E402
from latchkey.v1 import watch_pb2, watch_pb2_grpc  # noqa: E402
from steps import emit, error_info  # noqa: E402


def seconds(n):
    return duration_pb2.Duration(seconds=n)


def watch_step(channel, kv):
    watch = watch_pb2_grpc.WatchServiceStub(channel)
    stream = watch.Watch(watch_pb2.WatchRequest(prefix="pyw/"), timeout=10)
    established = threading.Event()
    seen = []

    def read():
        for message in stream:
            if not message.events:
                established.set()
                continue
            for event in message.events:
                seen.append(
                    {
                        "kind": watch_pb2.EventKind.Name(event.kind),
                        "key": event.kv.key,
                        "revision": message.header.revision,
                    }
                )
            stream.cancel()

    reader = threading.Thread(target=read)
    reader.start()
    established.wait(5)
    put = kv.Put(kv_pb2.PutRequest(key="pyw/1", value=b"x"), timeout=5)
    reader.join(5)
    emit("watch", events=seen, put_revision=put.header.revision)


def lease_step(channel, kv):
    leases = lease_pb2_grpc.LeaseServiceStub(channel)
    granted = leases.Grant(lease_pb2.GrantRequest(ttl=seconds(5)), timeout=5)
    kv.Put(kv_pb2.PutRequest(key="pyl/k", value=b"v", lease_id=granted.lease_id), timeout=5)
    requests = (lease_pb2.KeepAliveRequest(lease_id=granted.lease_id) for _ in range(3))
    ttls = [r.ttl.seconds for r in leases.KeepAlive(requests, timeout=5)]
    revoked = leases.Revoke(lease_pb2.RevokeRequest(lease_id=granted.lease_id), timeout=5)
    after = kv.Get(kv_pb2.GetRequest(key="pyl/k"), timeout=5)
    emit(
        "lease",
        keepalive_ttls=ttls,
        found=revoked.found,
        key_gone=not after.HasField("kv"),
    )


def lock_step(channel, kv):
    locks = lock_pb2_grpc.LockServiceStub(channel)
    first = locks.Acquire(lock_pb2.AcquireRequest(name="py/lock", owner="py-1", ttl=seconds(10)), timeout=5)
    other = locks.Acquire(lock_pb2.AcquireRequest(name="py/lock", owner="py-2", ttl=seconds(10)), timeout=5)
    token = first.lock.fencing_token
    fence = common_pb2.Fence(lock_name="py/lock", token=token)
    kv.Put(kv_pb2.PutRequest(key="py/fenced", value=b"1", fence=fence), timeout=5)
    released = locks.Release(lock_pb2.ReleaseRequest(name="py/lock", fencing_token=token), timeout=5)
    second = locks.Acquire(lock_pb2.AcquireRequest(name="py/lock", owner="py-2", ttl=seconds(10)), timeout=5)
    try:
        kv.Put(kv_pb2.PutRequest(key="py/fenced", value=b"stale", fence=fence), timeout=5)
        stale = {"code": "OK"}
    except grpc.RpcError as error:
        stale = {"code": error.code().name, "info": error_info(error)}
    emit(
        "lock",
        first_acquired=first.acquired,
        other_acquired=other.acquired,
        holder=other.lock.owner,
        released=lock_pb2.ReleaseResponse.Status.Name(released.status),
        second_acquired=second.acquired,
        tokens_increase=second.lock.fencing_token > token,
        stale=stale,
    )


def main():
    with grpc.insecure_channel(sys.argv[1]) as channel:
        kv = kv_pb2_grpc.KvServiceStub(channel)
        watch_step(channel, kv)
        lease_step(channel, kv)
        lock_step(channel, kv)


if __name__ == "__main__":
    main()
