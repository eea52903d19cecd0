"""OTLP/HTTP and CloudEvents endpoints, plus the node's health and metrics endpoints.

Status codes are chosen here and only here: 400 undecodable, 413 too large, 415 unknown
content type or encoding, 429/503 with Retry-After when the node cannot take more.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message
from google.rpc import status_pb2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from collector.ingest import Backpressure, Ingest, IngestResult
from collector.metrics import IngestMetrics
from collector.model import DecodeError, Rejection, UnsupportedMediaType
from collector.otlp import encode_logs_response, encode_trace_response
from collector.quarantine import Quarantine
from milepost.auth import Authenticator, AuthError

log = logging.getLogger(__name__)

_OTLP_TYPES = {
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
    "application/json": "json",
}


class BodyTooLarge(Exception):
    def __init__(self, limit: int, decompressed: bool) -> None:
        what = "decompressed body" if decompressed else "body"
        super().__init__(f"The {what} exceeds the limit of {limit} bytes (server.max_body_bytes).")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed, never holding more than ``limit`` bytes of either form.

    Chunked bodies without Content-Length are read as they stream; a gzip bomb stops
    at the limit instead of inflating in memory.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, decompressed=False)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, decompressed=False)
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedEncoding(encoding)
    inflater = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise DecodeError(f"Body is not valid {encoding} data: {exc}.") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit, decompressed=True)
    if not inflater.eof:
        raise DecodeError(f"Body is truncated {encoding} data.")
    return out


class UnsupportedEncoding(Exception):
    def __init__(self, encoding: str) -> None:
        super().__init__(f"Content-Encoding '{encoding}' is not supported; use gzip or identity.")


def _otlp_encoding(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    encoding = _OTLP_TYPES.get(content_type)
    if encoding is None:
        raise UnsupportedMediaType(content_type or "<none>")
    return encoding


def _status_response(
    status: int, message: str, encoding: str, headers: dict[str, str] | None = None
) -> Response:
    """An OTLP error answer: a google.rpc.Status in the request's encoding."""
    code = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 429: 8, 503: 14}.get(status, 2)
    if encoding == "protobuf":
        body: Message = status_pb2.Status(code=code, message=message)
        return Response(body.SerializeToString(), status, headers, media_type="application/x-protobuf")
    return JSONResponse({"code": code, "message": message}, status, headers)


def _rejection_json(rejection: Rejection) -> dict[str, object]:
    return {
        "index": rejection.position,
        "field": rejection.field,
        "value": rejection.value,
        "reason": rejection.reason,
        "source": rejection.source,
        "id": rejection.id,
    }


class IngestEndpoints:
    """The routes that take data in, and the node's health routes."""

    def __init__(
        self,
        ingest: Ingest,
        auth: Authenticator,
        metrics: IngestMetrics,
        max_body_bytes: int,
        max_inflight: int,
        ready: Callable[[], tuple[bool, str]],
        quarantine: Quarantine,
    ) -> None:
        self.ingest = ingest
        self.quarantine = quarantine
        self.auth = auth
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_inflight = max_inflight
        self.ready = ready
        self.inflight = 0

    def routes(self) -> list[Route]:
        return [
            Route("/v1/traces", self.traces, methods=["POST"]),
            Route("/v1/logs", self.logs, methods=["POST"]),
            Route("/v1/events", self.events, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/api/v1/quarantine", self.quarantined, methods=["GET"]),
            Route("/api/v1/quarantine/reprocess", self.reprocess, methods=["POST"]),
        ]

    async def traces(self, request: Request) -> Response:
        return await self._otlp(request, "traces", self.ingest.traces, encode_trace_response)

    async def logs(self, request: Request) -> Response:
        return await self._otlp(request, "logs", self.ingest.logs, encode_logs_response)

    async def _otlp(
        self,
        request: Request,
        endpoint: str,
        take: Callable[[bytes, str], Awaitable[IngestResult]],
        encode: Callable[[list[Rejection], str], bytes],
    ) -> Response:
        encoding = "json"
        try:
            encoding = _otlp_encoding(request)
            self.auth.check(request.headers.get("authorization"), "ingest")
            with self._slot():
                body = await read_body(request, self.max_body_bytes)
                result = await take(body, encoding)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an answer, never a 500
            status, message, headers = self._failure(exc)
            self.metrics.requests.inc(1, endpoint, str(status))
            return _status_response(status, message, encoding, headers)
        self.metrics.requests.inc(1, endpoint, "200")
        media = "application/x-protobuf" if encoding == "protobuf" else "application/json"
        return Response(encode(result.rejected, encoding), 200, media_type=media)

    async def events(self, request: Request) -> Response:
        try:
            self.auth.check(request.headers.get("authorization"), "ingest")
            with self._slot():
                body = await read_body(request, self.max_body_bytes)
                headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
                result = await self.ingest.events(headers, body)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an answer, never a 500
            status, message, extra = self._failure(exc)
            self.metrics.requests.inc(1, "events", str(status))
            return JSONResponse({"error": message, "detail": None}, status, extra)
        rejected = [_rejection_json(r) for r in result.rejected]
        if rejected and result.accepted == 0:
            self.metrics.requests.inc(1, "events", "400")
            detail = {"accepted": 0, "rejected": rejected, "quarantined": len(rejected)}
            return JSONResponse({"error": result.rejected[0].reason, "detail": detail}, 400)
        self.metrics.requests.inc(1, "events", "200")
        return JSONResponse({"accepted": result.accepted, "rejected": rejected, "quarantined": len(rejected)})

    def _slot(self) -> _Slot:
        return _Slot(self)

    def _failure(self, exc: Exception) -> tuple[int, str, dict[str, str] | None]:
        if isinstance(exc, AuthError):
            return exc.status, exc.reason, {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if isinstance(exc, DecodeError):
            return 400, exc.reason, None
        if isinstance(exc, BodyTooLarge):
            return 413, str(exc), None
        if isinstance(exc, (UnsupportedMediaType, UnsupportedEncoding)):
            return 415, str(exc), None
        if isinstance(exc, Backpressure):
            return (503 if exc.unavailable else 429), exc.reason, {"Retry-After": str(exc.retry_after)}
        log.exception("ingest failed unexpectedly; answered 503 so the client retries")
        return 503, "The node could not take the request; retry later.", {"Retry-After": "1"}

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        ok, detail = self.ready()
        return JSONResponse(
            {"status": "ready" if ok else "unavailable", "storage": detail}, 200 if ok else 503
        )

    async def prometheus(self, request: Request) -> Response:
        try:
            self.auth.check(request.headers.get("authorization"), "read")
        except AuthError as exc:
            return JSONResponse({"error": exc.reason, "detail": None}, exc.status)
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def quarantined(self, request: Request) -> Response:
        """``GET /api/v1/quarantine?signal=&limit=``: refused items with their reasons, newest first."""
        try:
            self.auth.check(request.headers.get("authorization"), "read")
        except AuthError as exc:
            return JSONResponse({"error": exc.reason, "detail": None}, exc.status)
        signal = request.query_params.get("signal")
        if signal is not None and signal not in ("traces", "events", "logs"):
            return JSONResponse(
                {"error": f"Parameter 'signal' has value '{signal[:40]}'. Use traces, events or logs."}, 400
            )
        limit = _limit(request.query_params.get("limit"))
        if limit is None:
            return JSONResponse({"error": "Parameter 'limit' must be a whole number from 1 to 1000."}, 400)
        return JSONResponse(await run_in_threadpool(self.quarantine.unresolved, signal, limit))

    async def reprocess(self, request: Request) -> Response:
        """``POST /api/v1/quarantine/reprocess?limit=``: re-validate quarantined events (admin)."""
        try:
            self.auth.check(request.headers.get("authorization"), "admin")
            limit = _limit(request.query_params.get("limit"))
            if limit is None:
                return JSONResponse(
                    {"error": "Parameter 'limit' must be a whole number from 1 to 1000."}, 400
                )
            return JSONResponse(await self.quarantine.reprocess(limit))
        except Exception as exc:  # noqa: BLE001 - every failure becomes an answer, never a 500
            status, message, headers = self._failure(exc)
            return JSONResponse({"error": message, "detail": None}, status, headers)


def _limit(text: str | None, default: int = 100) -> int | None:
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        return None
    return int(text)


class _Slot:
    """One of the node's ``max_inflight`` request slots; refused (429) when none is free."""

    def __init__(self, endpoints: IngestEndpoints) -> None:
        self.endpoints = endpoints

    def __enter__(self) -> None:
        if self.endpoints.inflight >= self.endpoints.max_inflight:
            raise Backpressure(
                "Too many requests in flight; retry shortly.", retry_after=1, unavailable=False
            )
        self.endpoints.inflight += 1

    def __exit__(self, *exc: object) -> None:
        self.endpoints.inflight -= 1
