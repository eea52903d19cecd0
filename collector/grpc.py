"""OTLP/gRPC ``TraceService/Export`` on the gRPC port, with the HTTP path's semantics.

Requests arrive as raw bytes (no deserialisation by grpc) so the same decoder runs on
them as on OTLP/HTTP protobuf bodies.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from collector.ingest import Backpressure, Ingest
from collector.model import DecodeError
from collector.otlp import encode_trace_response
from milepost.auth import Authenticator, AuthError

log = logging.getLogger(__name__)

_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _retry_status(code: grpc.StatusCode, message: str, retry_after: int) -> grpc.Status:
    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after))
    detail = status_pb2.Status(code=code.value[0], message=message)
    detail.details.add().Pack(info)
    return rpc_status.to_status(detail)


class TraceService:
    def __init__(self, ingest: Ingest, auth: Authenticator) -> None:
        self.ingest = ingest
        self.auth = auth

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata())
        try:
            self.auth.check(str(metadata.get("authorization", "")) or None, "ingest")
            result = self.ingest.traces_sync(request)
        except AuthError as exc:
            code = grpc.StatusCode.UNAUTHENTICATED if exc.status == 401 else grpc.StatusCode.PERMISSION_DENIED
            context.abort(code, exc.reason)
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.reason)
        except Backpressure as exc:
            code = grpc.StatusCode.UNAVAILABLE if exc.unavailable else grpc.StatusCode.RESOURCE_EXHAUSTED
            context.abort_with_status(_retry_status(code, exc.reason, exc.retry_after))
        except Exception:
            log.exception("gRPC export failed unexpectedly")
            context.abort_with_status(_retry_status(grpc.StatusCode.UNAVAILABLE, "retry later", 1))
        return encode_trace_response(result.rejected, "protobuf")


def start_grpc(
    ingest: Ingest, auth: Authenticator, host: str, port: int, max_message_bytes: int
) -> grpc.Server:
    """Start the gRPC server; the caller stops it with ``server.stop(grace)``."""
    service = TraceService(ingest, auth)
    handler = grpc.method_handlers_generic_handler(
        _SERVICE,
        {"Export": grpc.unary_unary_rpc_method_handler(service.export)},
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpc"),
        handlers=[handler],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"Cannot listen for OTLP/gRPC on {host}:{port}.")
    server.start()
    return server
