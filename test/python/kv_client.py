"""Latchkey interop client on Python grpcio (Debian's python3-grpcio).

Usage: kv_client.py <host:port> <dir of generated stubs>

The stubs are those python-interop.test.ts generates: latchkey/v1 kv and
common, google/rpc status and error_info (ErrorInfo alone: Debian's
grpc_tools predates proto3 `optional`, which error_details.proto uses) and
lkhealth/health (grpc.health.v1 under a module path that does not shadow the
grpc package).

Prints one JSON object per line, one per step: put and get, a failed
precondition with the google.rpc.ErrorInfo read from the
grpc-status-details-bin trailing metadata, a deadline on a server stream,
and gzip-compressed requests.
"""
import os
import sys

import grpc

sys.path.insert(0, sys.argv[2])
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))

from latchkey.v1 import kv_pb2, kv_pb2_grpc  # noqa: E402
from lkhealth import health_pb2, health_pb2_grpc  # noqa: E402
from steps import emit, error_info  # noqa: E402


def main():
    target = sys.argv[1]
    with grpc.insecure_channel(target) as channel:
        kv = kv_pb2_grpc.KvServiceStub(channel)
        metadata = (("x-client", "python"),)

        put = kv.Put(kv_pb2.PutRequest(key="py/a", value=b"hello"), metadata=metadata, timeout=5)
        emit("put", revision=put.header.revision, version=put.kv.version)

        got = kv.Get(kv_pb2.GetRequest(key="py/a"), timeout=5)
        emit("get", value=got.kv.value.decode(), version=got.kv.version)

        try:
            kv.Put(
                kv_pb2.PutRequest(
                    key="py/a", value=b"again", precondition=kv_pb2.Precondition(must_not_exist=True)
                ),
                timeout=5,
            )
            emit("precondition", code="OK")
        except grpc.RpcError as error:
            emit("precondition", code=error.code().name, message=error.details(), info=error_info(error))

        # A server stream that never ends on its own: the deadline ends it.
        health = health_pb2_grpc.HealthStub(channel)
        seen = []
        try:
            for message in health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=0.3):
                seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(message.status))
            emit("deadline", code="OK", seen=seen)
        except grpc.RpcError as error:
            emit("deadline", code=error.code().name, seen=seen)

    with grpc.insecure_channel(target, compression=grpc.Compression.Gzip) as channel:
        kv = kv_pb2_grpc.KvServiceStub(channel)
        value = b"z" * 50000
        kv.Put(kv_pb2.PutRequest(key="py/gz", value=value), timeout=5)
        got = kv.Get(kv_pb2.GetRequest(key="py/gz"), timeout=5, compression=grpc.Compression.Gzip)
        emit("gzip", same=got.kv.value == value, length=len(got.kv.value))


if __name__ == "__main__":
    main()
