"""The query API's routes (``/api/v1/...``): JSON answers, 404 for unknown keys, 400 naming the parameter."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from correlator.traces import TRACE_ID, TraceReader
from milepost.auth import Authenticator, AuthError


def error(status: int, message: str, detail: object = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status)


class QueryEndpoints:
    def __init__(self, traces: TraceReader, auth: Authenticator) -> None:
        self.traces = traces
        self.auth = auth

    def routes(self) -> list[Route]:
        return [Route("/api/v1/traces/{trace_id}", self.trace, methods=["GET"])]

    async def trace(self, request: Request) -> Response:
        try:
            principal = self.auth.check(request.headers.get("authorization"), "read")
        except AuthError as exc:
            return error(exc.status, exc.reason)
        trace_id = request.path_params["trace_id"]
        if not TRACE_ID.match(trace_id):
            return error(400, f"Parameter 'trace_id' has value '{trace_id[:64]}'. Must be 32 hex characters.")
        spans = await run_in_threadpool(self.traces.spans, trace_id, principal.stores)
        if spans is None:
            return error(404, f"Trace '{trace_id}' is not known.", {"trace_id": trace_id})
        return JSONResponse({"trace_id": trace_id.lower(), "spans": spans})
