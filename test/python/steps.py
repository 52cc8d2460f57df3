"""Shared by the Python interop clients: step output and ErrorInfo decoding.

Import after the generated stubs' folder is on sys.path (the clients put
argv[2] there first).
"""
import json

from google.rpc import error_info_pb2, status_pb2


def emit(step, **fields):
    """Prints one step as one JSON line (the vitest side reads them by name)."""
    print(json.dumps({"step": step, **fields}), flush=True)


def error_info(error):
    """The google.rpc.ErrorInfo of a grpc.RpcError, from grpc-status-details-bin."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_info_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return {"reason": info.reason, "domain": info.domain, "metadata": dict(info.metadata)}
    return None
