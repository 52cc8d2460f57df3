"""Latchkey SnapshotService from Python grpcio (Debian's python3-grpcio).

Usage: snapshot_client.py <host:port> <dir of generated stubs> <execution id>

The stubs are those snapshot-python.test.ts generates: latchkey/v1 common
and snapshot, google/rpc status and error_info (ErrorInfo alone, see
kv_client.py).

Runs one execution through its life and prints one JSON object per line,
one per step: save, load, a stale save (ABORTED SEQUENCE_STALE with the
stored sequence in the ErrorInfo metadata), a patch with expected_sequence
(an Int64Value wrapper), an event append and read, suspend, resume, a second
resume of the same token (FAILED_PRECONDITION INVALID_TOKEN) and the final
load.
"""
import json
import os
import sys

import grpc

sys.path.insert(0, sys.argv[2])
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))

from google.protobuf import wrappers_pb2  # noqa: E402
from latchkey.v1 import snapshot_pb2, snapshot_pb2_grpc  # noqa: E402
from steps import emit, error_info  # noqa: E402


def failure(call):
    try:
        call()
        return {"code": "OK"}
    except grpc.RpcError as error:
        return {"code": error.code().name, "info": error_info(error)}


def main():
    target, execution_id = sys.argv[1], sys.argv[3]
    status_name = snapshot_pb2.ExecutionStatus.Name
    with grpc.insecure_channel(target) as channel:
        snapshots = snapshot_pb2_grpc.SnapshotServiceStub(channel)

        saved = snapshots.Save(
            snapshot_pb2.SaveRequest(
                execution_id=execution_id,
                sequence=1,
                state=json.dumps({"step": "charge", "attempt": 1}).encode(),
                content_type="application/json",
                metadata={"client": "python"},
            ),
            timeout=5,
        )
        emit(
            "save",
            revision=saved.header.revision,
            sequence=saved.snapshot.sequence,
            status=status_name(saved.snapshot.status),
        )

        loaded = snapshots.Load(snapshot_pb2.LoadRequest(execution_id=execution_id), timeout=5)
        emit(
            "load",
            state=json.loads(loaded.snapshot.state),
            metadata=dict(loaded.snapshot.metadata),
            state_size=loaded.snapshot.state_size,
        )

        emit(
            "stale",
            **failure(
                lambda: snapshots.Save(
                    snapshot_pb2.SaveRequest(execution_id=execution_id, sequence=1, state=b"{}"),
                    timeout=5,
                )
            ),
        )

        patched = snapshots.Patch(
            snapshot_pb2.PatchRequest(
                execution_id=execution_id,
                merge_patch=json.dumps({"attempt": 2, "approved": None}),
                expected_sequence=wrappers_pb2.Int64Value(value=1),
            ),
            timeout=5,
        )
        emit("patch", sequence=patched.snapshot.sequence)

        appended = snapshots.AppendEvents(
            snapshot_pb2.AppendEventsRequest(
                execution_id=execution_id,
                events=[snapshot_pb2.ExecutionEvent(type="charged", data=b"42")],
                expected_last_seq=wrappers_pb2.Int64Value(value=0),
                idempotency_key="py-1",
            ),
            timeout=5,
        )
        read = snapshots.ReadEvents(snapshot_pb2.ReadEventsRequest(execution_id=execution_id), timeout=5)
        emit(
            "events",
            first_seq=appended.first_seq,
            last_seq=read.last_seq,
            types=[e.type for e in read.events],
        )

        suspended = snapshots.Suspend(
            snapshot_pb2.SuspendRequest(execution_id=execution_id, reason="approval", data=b"ask"),
            timeout=5,
        )
        emit(
            "suspend",
            token_length=len(suspended.resume_token),
            status=status_name(suspended.snapshot.status),
            reason=suspended.snapshot.suspension.reason,
        )

        resumed = snapshots.Resume(
            snapshot_pb2.ResumeRequest(resume_token=suspended.resume_token, input=b'{"approved": true}'),
            timeout=5,
        )
        emit(
            "resume",
            status=status_name(resumed.snapshot.status),
            state=json.loads(resumed.snapshot.state),
            input=json.loads(resumed.snapshot.input),
        )

        emit(
            "reuse",
            **failure(
                lambda: snapshots.Resume(
                    snapshot_pb2.ResumeRequest(resume_token=suspended.resume_token), timeout=5
                )
            ),
        )

        final = snapshots.Load(snapshot_pb2.LoadRequest(execution_id=execution_id), timeout=5)
        emit(
            "final",
            sequence=final.snapshot.sequence,
            status=status_name(final.snapshot.status),
            input=json.loads(final.snapshot.input),
        )


if __name__ == "__main__":
    main()
