"""The query API's routes (``/api/v1/...``): JSON answers, 404 for unknown keys, 400 naming the parameter."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from correlator.model import MILESTONES
from correlator.orders import STATUSES, OrderFilter, OrderReader, decode_cursor
from correlator.traces import TRACE_ID, TraceReader
from milepost.auth import Authenticator, AuthError, Principal


class BadParameter(Exception):
    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"Parameter '{name}' has value '{value[:80]}'. {expected}")
        self.name = name


def error(status: int, message: str, detail: object = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status)


def time_parameter(request: Request, name: str) -> int | None:
    """An RFC 3339 query parameter as µs since the epoch (None when absent)."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadParameter(name, text, "Must be an RFC 3339 time such as 2026-11-27T09:00:00Z.") from None
    if moment.tzinfo is None:
        raise BadParameter(name, text, "Must carry a timezone, e.g. a trailing Z.")
    return int(moment.timestamp() * 1_000_000)


def int_parameter(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadParameter(name, text, f"Must be a whole number from {low} to {high}.")
    return int(text)


def choice_parameter(
    request: Request, name: str, choices: tuple[str, ...], default: str | None
) -> str | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if text not in choices:
        raise BadParameter(name, text, f"Must be one of {', '.join(choices)}.")
    return text


class QueryEndpoints:
    def __init__(
        self,
        traces: TraceReader,
        orders: OrderReader,
        auth: Authenticator,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.traces = traces
        self.orders = orders
        self.auth = auth
        self.clock = clock

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/traces/{trace_id}", self.trace, methods=["GET"]),
            Route("/api/v1/orders", self.order_list, methods=["GET"]),
            Route("/api/v1/orders/{key:path}", self.order, methods=["GET"]),
        ]

    def _reader(self, request: Request) -> Principal:
        return self.auth.check(request.headers.get("authorization"), "read")

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    async def trace(self, request: Request) -> Response:
        try:
            principal = self._reader(request)
        except AuthError as exc:
            return error(exc.status, exc.reason)
        trace_id = request.path_params["trace_id"]
        if not TRACE_ID.match(trace_id):
            return error(400, f"Parameter 'trace_id' has value '{trace_id[:64]}'. Must be 32 hex characters.")
        spans = await run_in_threadpool(self.traces.spans, trace_id, principal.stores)
        if spans is None:
            return error(404, f"Trace '{trace_id}' is not known.", {"trace_id": trace_id})
        return JSONResponse({"trace_id": trace_id.lower(), "spans": spans})

    async def order(self, request: Request) -> Response:
        try:
            principal = self._reader(request)
        except AuthError as exc:
            return error(exc.status, exc.reason)
        key = request.path_params["key"]
        if not key or len(key) > 256:
            return error(400, f"Parameter 'key' has value '{key[:80]}'. Must be 1 to 256 characters.")
        order = await run_in_threadpool(self.orders.lookup, key, self._now_us(), principal.stores)
        if order is None:
            return error(404, f"Order '{key}' is not known.", {"key": key})
        return JSONResponse(order)

    async def order_list(self, request: Request) -> Response:
        try:
            principal = self._reader(request)
            cursor = request.query_params.get("cursor") or None
            if cursor is not None and decode_cursor(cursor) is None:
                raise BadParameter("cursor", cursor, "Use the next_cursor of a previous answer.")
            where = OrderFilter(
                status=choice_parameter(request, "status", STATUSES, "all") or "all",
                store_id=request.query_params.get("store_id") or None,
                milestone=choice_parameter(request, "milestone", MILESTONES, None),
                since_us=time_parameter(request, "since"),
                until_us=time_parameter(request, "until"),
                limit=int_parameter(request, "limit", 50, 1, 1000),
                cursor=cursor,
            )
        except AuthError as exc:
            return error(exc.status, exc.reason)
        except BadParameter as exc:
            return error(400, str(exc), {"parameter": exc.name})
        return JSONResponse(
            await run_in_threadpool(self.orders.list, where, self._now_us(), principal.stores)
        )
